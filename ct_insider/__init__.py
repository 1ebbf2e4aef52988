"""Pure domain code of the commercetools -> Insider connector: config, clients, models, mapping."""
