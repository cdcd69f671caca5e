"""Alerts raised by the daemon: a tenant's provider is down.

:mod:`pipecored.alerts.dispatcher` is the host: it turns circuit changes into alerts and gets
them to every registered receiver off the delivery path. :mod:`pipecored.alerts.receivers` holds
the built-in Alertmanager and webhook receivers, an ordinary plugin module registered through the
``pipecored`` entry-point group like a third party's. The types receivers program against are
public: ``pipecored.Alert``, ``pipecored.AlertContext``, ``pipecored.AlertReceiver``.
"""
