"""The web console at ``/ui`` (see :mod:`netpersona.service.console.mount`)."""
