"""hemascope hub: the clinic or district server that receives session payloads from devices.

Installed with the `hub` extra (`pip install 'hemascope[hub]'`). It imports `edge` for the
payload and bundle formats; `edge` never imports `hub`, so the device stays light.
"""
