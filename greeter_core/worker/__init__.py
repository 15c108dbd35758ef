"""Out-of-process driving: the plugin runs in a worker process that cannot take the host down.

``protocol`` frames messages on the channel, ``client`` (the host side) owns a
worker's whole life, ``main`` is the worker itself. The worker loads the plugin
with the very same loader as the host (``greeter_core.loading``).
"""
