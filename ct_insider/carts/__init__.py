"""Cart events and cart recovery from commercetools carts: pure functions (snapshot, diff,
events, reminders) that workflows/cart.py orchestrates and activities/cart.py feeds."""
