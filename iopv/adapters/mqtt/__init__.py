"""MQTT: ``wire`` (the packets we write and read ourselves), ``client`` (aiomqtt/paho set-up and
every private attribute we touch), ``stream`` (the socket wrappers' shared buffering), ``feed``
(ticks in), ``sink`` (values and the instance status out), ``events`` (the reference data out:
directory, session events, summaries, heartbeats)."""
