"""The registry's DuckDB schema, versioned, with migrations from day one.

`MIGRATIONS[i]` takes the schema from version i to i+1. Never edit a released
migration: append a new one. `schema_version` holds one row per applied step.
"""

from __future__ import annotations

MIGRATIONS: list[list[str]] = [
    # 0 -> 1: the initial schema.
    [
        """CREATE TABLE IF NOT EXISTS schema_version (
               version INTEGER PRIMARY KEY,
               applied_at TIMESTAMP DEFAULT current_timestamp)""",
        """CREATE TABLE datasets (
               name VARCHAR PRIMARY KEY,
               path VARCHAR NOT NULL,            -- Parquet file, relative to .mothermodel/
               num_rows BIGINT NOT NULL,
               content_hash VARCHAR NOT NULL,    -- sha256 of the Parquet file
               text_field VARCHAR,
               split_field VARCHAR,
               gold_field VARCHAR,               -- gold labels: evaluation only, never training
               columns VARCHAR[] NOT NULL,
               source_file VARCHAR,
               created_at TIMESTAMP NOT NULL,
               updated_at TIMESTAMP NOT NULL)""",
        """CREATE TABLE tasks (
               name VARCHAR PRIMARY KEY,
               dataset VARCHAR NOT NULL,
               classes VARCHAR[] NOT NULL,
               parent VARCHAR,
               description VARCHAR NOT NULL DEFAULT '',
               owner VARCHAR,
               version INTEGER NOT NULL,
               fingerprint VARCHAR NOT NULL,
               spec_hash VARCHAR NOT NULL,
               spec_origin VARCHAR,
               created_at TIMESTAMP NOT NULL,
               updated_at TIMESTAMP NOT NULL)""",
        """CREATE TABLE task_versions (         -- one row per version of every task ever submitted
               task VARCHAR NOT NULL,
               version INTEGER NOT NULL,
               fingerprint VARCHAR NOT NULL,
               spec_json VARCHAR NOT NULL,
               created_at TIMESTAMP NOT NULL,
               PRIMARY KEY (task, version))""",
        """CREATE TABLE sources (
               task VARCHAR NOT NULL,
               name VARCHAR NOT NULL,
               kind VARCHAR NOT NULL CHECK (kind IN ('lf', 'column', 'task_output', 'model')),
               ref VARCHAR,                      -- column, upstream task or model URI
               code VARCHAR,                     -- an LF's code
               code_hash VARCHAR,
               content_hash VARCHAR NOT NULL,    -- decides the version
               version INTEGER NOT NULL,
               created_at TIMESTAMP NOT NULL,
               updated_at TIMESTAMP NOT NULL,
               PRIMARY KEY (task, name))""",
        """CREATE TABLE edges (                 -- typed dependency edges between tasks
               upstream VARCHAR NOT NULL,
               downstream VARCHAR NOT NULL,
               kind VARCHAR NOT NULL CHECK (kind IN ('parent', 'task_output')),
               PRIMARY KEY (upstream, downstream, kind))""",
        "CREATE INDEX edges_downstream ON edges (downstream)",
        """CREATE TABLE label_matrices (
               task VARCHAR NOT NULL,
               version INTEGER NOT NULL,
               content_hash VARCHAR NOT NULL,
               path VARCHAR NOT NULL,
               dataset_hash VARCHAR NOT NULL,
               source_versions VARCHAR NOT NULL, -- JSON {source: version}
               task_fingerprint VARCHAR NOT NULL,
               num_rows BIGINT,
               created_at TIMESTAMP NOT NULL,
               PRIMARY KEY (task, version))""",
        """CREATE TABLE prob_labels (
               task VARCHAR NOT NULL,
               version INTEGER NOT NULL,
               label_matrix_version INTEGER NOT NULL,
               model VARCHAR NOT NULL,           -- majority | label-model | ...
               content_hash VARCHAR NOT NULL,
               path VARCHAR NOT NULL,
               task_fingerprint VARCHAR NOT NULL,
               metrics VARCHAR,                  -- JSON
               created_at TIMESTAMP NOT NULL,
               PRIMARY KEY (task, version))""",
        """CREATE TABLE models (
               version INTEGER PRIMARY KEY,
               path VARCHAR NOT NULL,
               encoder VARCHAR,
               content_hash VARCHAR,
               metrics VARCHAR,                  -- JSON
               mlflow_run_id VARCHAR,
               created_at TIMESTAMP NOT NULL)""",
        """CREATE TABLE model_tasks (
               model_version INTEGER NOT NULL,
               task VARCHAR NOT NULL,
               task_fingerprint VARCHAR NOT NULL,
               prob_label_version INTEGER,
               PRIMARY KEY (model_version, task))""",
        """CREATE TABLE deployables (
               task VARCHAR NOT NULL,
               version INTEGER NOT NULL,
               model_version INTEGER NOT NULL,
               task_fingerprint VARCHAR NOT NULL,
               student VARCHAR NOT NULL,
               path VARCHAR NOT NULL,
               content_hash VARCHAR,
               mlflow_model_version VARCHAR,
               metrics VARCHAR,                  -- JSON
               created_at TIMESTAMP NOT NULL,
               PRIMARY KEY (task, version))""",
    ],
    # 1 -> 2: what the labeling layer needs.
    [
        "ALTER TABLE tasks ADD COLUMN spec_source VARCHAR",      # a Python spec's module text
        "ALTER TABLE tasks ADD COLUMN parent_class VARCHAR",     # the parent class a child task refines
        "ALTER TABLE label_matrices ADD COLUMN inputs_key VARCHAR",  # hash of dataset + source versions
        "ALTER TABLE label_matrices ADD COLUMN num_entries BIGINT",
        "ALTER TABLE label_matrices ADD COLUMN report VARCHAR",       # JSON: per-LF faults
        "ALTER TABLE prob_labels ADD COLUMN config VARCHAR",          # JSON: label model settings
    ],
    # 2 -> 3: task inputs beyond one text field, and the per-task guard's choice of what serves a task.
    [
        "ALTER TABLE tasks ADD COLUMN input VARCHAR",                 # JSON TaskInput; NULL = the dataset's text field
        "ALTER TABLE model_tasks ADD COLUMN served_by VARCHAR",       # 'model' | 'labels' (NULL: before the guard)
        "ALTER TABLE model_tasks ADD COLUMN checkpoint VARCHAR",      # the stage checkpoint that serves it
        "ALTER TABLE model_tasks ADD COLUMN checkpoint_hash VARCHAR", # sha256 of that checkpoint's manifest
        "ALTER TABLE model_tasks ADD COLUMN guard VARCHAR",           # JSON: the figures the choice was made on
    ],
    # 3 -> 4: one task's fault never stops the others; a task may name its own gold column.
    [
        """CREATE TABLE task_faults (            -- each task's current fault per stage; gone when the stage next succeeds
               task VARCHAR NOT NULL,
               stage VARCHAR NOT NULL,           -- 'label apply' | 'label fit' | 'train'
               reason VARCHAR NOT NULL,
               fix VARCHAR,
               recorded_at TIMESTAMP NOT NULL,
               PRIMARY KEY (task, stage))""",
        "ALTER TABLE tasks ADD COLUMN gold VARCHAR",                   # the task's own gold column (NULL: inherited)
    ],
    # 4 -> 5: sources computed by models (embedding, prompt) and hand labels (`label add`) with their provenance.
    # DuckDB cannot drop a CHECK constraint: the sources table is rebuilt with the wider one.
    [
        """CREATE TABLE sources_v5 (
               task VARCHAR NOT NULL,
               name VARCHAR NOT NULL,
               kind VARCHAR NOT NULL CHECK (kind IN ('lf', 'column', 'task_output', 'model', 'embedding', 'prompt',
                                                     'hand')),
               ref VARCHAR,                      -- column, upstream task, model URI or hand-labels file
               code VARCHAR,                     -- an LF's code; a model-computed source's parameters (JSON)
               code_hash VARCHAR,
               content_hash VARCHAR NOT NULL,    -- decides the version
               version INTEGER NOT NULL,
               created_at TIMESTAMP NOT NULL,
               updated_at TIMESTAMP NOT NULL,
               PRIMARY KEY (task, name))""",
        "INSERT INTO sources_v5 SELECT task, name, kind, ref, code, code_hash, content_hash, version, created_at, "
        "updated_at FROM sources",
        "DROP TABLE sources",
        "ALTER TABLE sources_v5 RENAME TO sources",
        """CREATE TABLE hand_labels (             -- one row per version of a task's hand labels: who added what, when
               task VARCHAR NOT NULL,
               version INTEGER NOT NULL,         -- the hand-label source's version
               path VARCHAR NOT NULL,            -- Parquet (row, label, added_by, added_in), relative to .mothermodel/
               content_hash VARCHAR NOT NULL,
               num_rows BIGINT NOT NULL,         -- hand-labelled rows in this version
               added BIGINT NOT NULL,            -- rows this version added or changed
               valid_rows BIGINT NOT NULL,       -- of them in the valid split (then left out of every valid figure)
               added_by VARCHAR,
               source_file VARCHAR,
               replaced BOOLEAN NOT NULL,        -- this version replaced the set instead of adding to it
               created_at TIMESTAMP NOT NULL,
               PRIMARY KEY (task, version))""",
    ],
    # 5 -> 6: slices (slicing functions: stored with the sources as kind 'slice', never voting) and their
    # membership, computed by `label apply` beside the label matrix. The sources table is rebuilt again for
    # its CHECK (DuckDB cannot alter one).
    [
        """CREATE TABLE sources_v6 (
               task VARCHAR NOT NULL,
               name VARCHAR NOT NULL,
               kind VARCHAR NOT NULL CHECK (kind IN ('lf', 'column', 'task_output', 'model', 'embedding', 'prompt',
                                                     'hand', 'slice')),
               ref VARCHAR,                      -- column, upstream task, model URI or hand-labels file
               code VARCHAR,                     -- an LF's or slice's code; a model-computed source's parameters (JSON)
               code_hash VARCHAR,
               content_hash VARCHAR NOT NULL,    -- decides the version
               version INTEGER NOT NULL,
               created_at TIMESTAMP NOT NULL,
               updated_at TIMESTAMP NOT NULL,
               PRIMARY KEY (task, name))""",
        "INSERT INTO sources_v6 SELECT task, name, kind, ref, code, code_hash, content_hash, version, created_at, "
        "updated_at FROM sources",
        "DROP TABLE sources",
        "ALTER TABLE sources_v6 RENAME TO sources",
        """CREATE TABLE slice_memberships (       -- one row per version of a task's slice membership
               task VARCHAR NOT NULL,
               version INTEGER NOT NULL,
               path VARCHAR NOT NULL,            -- Parquet (row, slice), relative to .mothermodel/
               content_hash VARCHAR NOT NULL,
               dataset_hash VARCHAR NOT NULL,
               slice_versions VARCHAR NOT NULL,  -- JSON {slice: {version, code_hash}} it was computed from
               inputs_key VARCHAR NOT NULL,      -- hash of the dataset and those slices
               num_rows BIGINT NOT NULL,         -- the dataset's rows
               sizes VARCHAR NOT NULL,           -- JSON {slice: member rows}
               faults VARCHAR,                   -- JSON: slices that failed on some rows
               created_at TIMESTAMP NOT NULL,
               PRIMARY KEY (task, version))""",
        "ALTER TABLE tasks ADD COLUMN slice_heads BOOLEAN NOT NULL DEFAULT false",  # train slice heads for its slices
    ],
]

LATEST = len(MIGRATIONS)
