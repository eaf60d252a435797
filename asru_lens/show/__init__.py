"""Figures and widgets: ``viz`` (plotly), ``widgets`` (the ipywidgets steering slider), ``gallery`` (static pages)."""
