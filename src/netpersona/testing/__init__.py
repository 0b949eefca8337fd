"""For tests of netpersona and of code built on it: throwaway namespaces and fakes."""
