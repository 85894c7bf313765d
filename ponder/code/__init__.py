"""What ponder knows about coding problems: the public examples a problem's prompt states
(read from its text, or from its `tests_public`), running candidate programs on inputs, and
clustering candidates by how they behave on those inputs. Kept free of imports, so that
importing one of its modules loads only what that module needs."""
