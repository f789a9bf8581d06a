"""The ground every other part stands on; it imports nothing else of the project.

| module | what |
|---|---|
| ``schema`` | the one record schema (``datasets.Features``), splits, provenances, types, reject reasons |
| ``config`` | the build config (pydantic), loaded from YAML |
| ``chat`` | the chat format: a record rendered to ``messages``, letters parsed back |
| ``console`` | what long commands print, and the one ``fail`` of the command line |
| ``files`` | the one JSON reader and atomic writer, file hashes |
| ``environment`` | package versions, git state, hardware: what ran, where |
| ``hub`` | one Hub commit that makes a repo hold exactly a set of local files |
| ``layout`` | the owner of a built dataset folder, ``mixes.json`` included |
| ``runs`` | the owner of a training run folder |
| ``outputs`` | the owner of an evaluation output folder |
"""
