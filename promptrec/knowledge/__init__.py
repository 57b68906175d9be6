"""Knowledge-graph facts: sources, the merged graph, budgeted fact and link selection."""
