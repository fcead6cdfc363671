"""kubetune's operator side: the Study model, the reconcile loop, its backends and the CLI.

`spec` parses and validates Studies; `controller` is the backend-agnostic loop and the protocols
it is written against; `backends/{local,k8s,sim}` implement them; `report` writes a run's files;
`cli` wires one backend to the controller per command. docs/architecture.md has the map.
"""
