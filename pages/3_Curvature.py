"""Curvature page (being built)."""

import streamlit as st

from ui import state

state.init("Curvature")
st.title("Curvature")
st.info("This page is being built.")
state.sync_url()
