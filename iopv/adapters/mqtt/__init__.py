"""MQTT: ``wire`` (the packets we write and read ourselves), ``client`` (aiomqtt/paho set-up and
every private attribute we touch), ``feed`` (ticks in), ``sink`` (values out)."""
