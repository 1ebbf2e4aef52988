"""Pure functions from commercetools models to Insider models, shared by every sync path."""
