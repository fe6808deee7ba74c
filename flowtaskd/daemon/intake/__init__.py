"""Where runs come from: the task library, inboxes (watching, claiming, the spool,
archiving), the file trust check, and the dispatch of drops, fires and triggers into runs."""
