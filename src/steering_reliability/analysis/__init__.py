"""The report kit every study's report section uses: reading a run's results (data), markdown
tables and intervals (markdown), and figures (plotting). It knows no study."""
