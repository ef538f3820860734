"""Streamlit dashboard: reads only published marts (tandem.publish), never the warehouse."""
