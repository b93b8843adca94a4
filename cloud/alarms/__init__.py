"""Alarms: streaming rules on stored readings, batch findings as alarms, one lifecycle, and
notifications (docs/alarms.md)."""
