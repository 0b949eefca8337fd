"""The edge where netpersona meets the operating system."""
