"""Streamlit glue for the dashboard (the only package besides app.py/pages/ importing streamlit)."""
