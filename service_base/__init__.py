"""What the receiver and the workers share as services: the settings they both read and one log set-up.

`service_base.settings.ServiceSettings` holds the settings both read (Redis, the event store's key prefix
and dedupe window, logging), with one `SettingsError` and one way of naming a bad setting;
`service_base.logs` writes both services' lines (and Celery's) in one JSON shape on one stream.
"""
