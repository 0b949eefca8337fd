"""netpersona: one network persona per VM, made real in its kernel."""

__version__ = "0.1.0"
