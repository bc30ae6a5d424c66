"""Reports of a results folder, from its records alone: tidy tables, statistics, comparisons,
figures and a self-contained HTML page (``build_report``)."""
