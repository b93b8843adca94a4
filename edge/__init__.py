"""The edge agent: poll meters over Modbus, decode, flag quality, batch, chain, sign, keep
in a durable outbox and publish over mutually-authenticated TLS MQTT until the cloud confirms.
"""
