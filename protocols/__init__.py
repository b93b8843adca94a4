"""Sans-IO contracts shared by every part of Wattrail.

Will own: meter register maps and their decoders, the request planner, the `Reading`
record, the signed-envelope codec and the MQTT topic names. Nothing in this package opens
a socket, touches a database or imports asyncio: it turns bytes into values and back.
"""
