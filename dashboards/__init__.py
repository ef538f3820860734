"""Streamlit dashboard: reads only published marts (tandem.core.published), never the warehouse."""
