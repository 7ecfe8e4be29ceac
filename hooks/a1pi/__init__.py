"""A1PI augmentation (alpha-1 proteinase inhibitor, 60 mg/kg IV weekly), judged by several
hooks: ``criteria`` (declared once), ``patient_view`` (the decision walk), ``orders``
(medical necessity of a draft), and its card words in ``hooks/words/a1pi.json``."""
