"""The ``netpersona`` command line."""
