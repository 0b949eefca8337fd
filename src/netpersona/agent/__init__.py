"""The VM agent: query the metadata service, watch, apply, report (issue: the agent loop).

It never imports the web framework: it is an HTTP client of the VM-facing API
(docs/metadata-api.md) and a user of the applier (:mod:`netpersona.dataplane`).
"""
