"""The post-conference report's figures, pure: units, the aggregates PostgreSQL computes,
and the figures made from them (``docs/report-definitions.md``, ids R1–R21)."""
