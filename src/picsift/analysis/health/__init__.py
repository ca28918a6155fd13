"""Dataset health: label mistakes, near duplicates and leaks across splits, outliers, confusable classes, class
balance, uniqueness and representativeness, all from the one neighbour graph (:mod:`picsift.analysis.graph`).

:class:`~picsift.analysis.health.mistakes.LabelChecks` finds label mistakes;
:class:`~picsift.analysis.health.report.Health` runs every check into a
:class:`~picsift.analysis.health.report.HealthReport`.
"""
