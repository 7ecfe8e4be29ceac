"""Tools for trying and testing the service, never on its request path: the demo (a FHIR
server with the sample patients and the service, on loopback) and the sekmet-fhir server
it and the tests run."""
