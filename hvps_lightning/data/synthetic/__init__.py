"""Generated data in the official layouts: scenes (people, stuff, camera), videos, previews."""
