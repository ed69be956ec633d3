"""What people read: figures by subject, card summaries, case review, the HTML case report, run comparison.

Pure functions over results from ``modelling`` and ``store``; nothing here calls streamlit.
"""
