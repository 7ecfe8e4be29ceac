"""Population case-finding (issue 26): the patients AATD care is missing, across a health
system's records, with the same mapping and rules as the hooks (no second logic).

- ``export``: a FHIR Bulk Data export (NDJSON files) grouped by patient on disk, so memory
  holds one patient at a time whatever the population;
- ``worklists``: the categories, each decided by the cards ``pipeline.evaluate`` gives;
- ``run``: the screen over processes, the outputs (CSV, FHIR List, HTML report, summary).
"""
