"""What `ct-insider setup` and `ct-insider doctor` need beyond the clients: the
subscription draft, the InOne schema the mapping sends, scope and token checks."""
