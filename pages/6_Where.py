"""6 · Where: which layers the strategies change, and where the forget samples move."""

from __future__ import annotations

import streamlit as st

from ui import state

s = state.init("Where")
st.title("6 · Where the forgetting happens")
state.sync_url()
