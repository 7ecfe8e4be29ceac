"""Immunoglobulin replacement for secondary hypogammaglobulinaemia, judged by several
hooks: ``criteria`` (AAAAI 2022, declared once), ``patient_view``, ``orders``, and the
card words in ``hooks/words/immunoglobulin.json``."""
