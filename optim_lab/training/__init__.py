"""Training core: config -> data -> jitted step -> eval -> metrics -> checkpoint."""
