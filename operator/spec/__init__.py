"""The Study model: one dataclass definition gives the parser, the CRD schema and the docs."""
