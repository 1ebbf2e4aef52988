"""Replenishment reminders: a durable timer per customer and SKU, armed by purchases.

Pure logic lives here (periods, due dates, the timers a customer holds, the reminder
event); workflows/replenishment.py orchestrates, activities/replenishment.py adapts.
"""
