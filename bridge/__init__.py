"""The webhook bridge: commercetools deliveries and storefront events in, journey signals out."""
