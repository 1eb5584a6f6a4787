"""The report stage: attack-surface metrics, report.json and the terminal table."""
