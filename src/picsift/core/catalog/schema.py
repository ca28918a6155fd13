"""The catalog's schema: one SQL script per version, applied in order by :meth:`Catalog._migrate`.

A workspace records its version in SQLite's ``user_version``; opening it runs the scripts it has not had.
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: the first schema
    """
    CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE files(
        path TEXT PRIMARY KEY,          -- relative to the library root, '/'-separated
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        image_id TEXT,                  -- content hash; NULL when the file could not be read
        width INTEGER,
        height INTEGER,
        error TEXT,                     -- why the file was skipped, NULL when it is fine
        indexed_at REAL NOT NULL
    );
    CREATE INDEX files_by_image ON files(image_id);
    CREATE TABLE models(
        identity TEXT PRIMARY KEY,      -- see ModelSpec.identity()
        spec TEXT NOT NULL,
        dim INTEGER NOT NULL,
        vectors_file TEXT NOT NULL,     -- file name inside the model's folder
        next_row INTEGER NOT NULL,      -- rows below this are allocated in vectors_file
        version INTEGER NOT NULL,       -- bumped on every change; indexes record the version they hold
        created REAL NOT NULL
    );
    CREATE TABLE embeddings(
        model TEXT NOT NULL REFERENCES models(identity),
        image_id TEXT NOT NULL,
        row INTEGER NOT NULL,
        PRIMARY KEY(model, image_id)
    );
    CREATE TABLE collections(
        name TEXT PRIMARY KEY,
        created REAL NOT NULL,
        recipe TEXT NOT NULL            -- JSON: how the collection was made
    );
    CREATE TABLE collection_items(
        collection TEXT NOT NULL REFERENCES collections(name) ON DELETE CASCADE,
        image_id TEXT NOT NULL,
        score REAL,
        rank INTEGER NOT NULL,
        PRIMARY KEY(collection, image_id)
    );
    """,
    # 2: labelled data (see picsift.labels.metadata). Annotations are keyed by image id (content hash), like
    # embeddings and collections: filters join them without going through paths, and a moved file keeps them.
    """
    CREATE TABLE datasets(
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        folder TEXT,                    -- where its images live, relative to the library root
        source TEXT,                    -- JSON: format and project it was imported from
        created REAL NOT NULL
    );
    CREATE TABLE dataset_items(
        dataset INTEGER NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
        path TEXT NOT NULL,             -- relative to the library root, '/'-separated
        image_id TEXT NOT NULL,
        width INTEGER,
        height INTEGER,
        PRIMARY KEY(dataset, path)
    );
    CREATE INDEX dataset_items_by_image ON dataset_items(image_id);
    CREATE TABLE classes(
        name TEXT PRIMARY KEY,
        shape TEXT NOT NULL,            -- rectangle | polygon | any
        color TEXT
    );
    CREATE TABLE tag_names(
        name TEXT PRIMARY KEY,
        value_type TEXT NOT NULL        -- none | any_string | any_number | oneof_string
    );
    CREATE TABLE image_tags(
        id INTEGER PRIMARY KEY,
        image_id TEXT NOT NULL,
        name TEXT NOT NULL,
        value,                          -- no type affinity: NULL, text or number as given
        author TEXT
    );
    CREATE INDEX image_tags_by_name ON image_tags(name, value, image_id);
    CREATE INDEX image_tags_by_image ON image_tags(image_id);
    CREATE TABLE objects(
        id INTEGER PRIMARY KEY,
        image_id TEXT NOT NULL,
        class TEXT NOT NULL,
        geometry TEXT NOT NULL,         -- rectangle | polygon
        points TEXT NOT NULL,           -- JSON [[x, y], ...] in pixels; a rectangle is [[x1, y1], [x2, y2]]
        author TEXT
    );
    CREATE INDEX objects_by_class ON objects(class, image_id);
    CREATE INDEX objects_by_image ON objects(image_id);
    CREATE INDEX objects_by_author ON objects(author, image_id);
    CREATE TABLE object_tags(
        object INTEGER NOT NULL REFERENCES objects(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        value,
        author TEXT
    );
    CREATE INDEX object_tags_by_name ON object_tags(name, value, object);
    CREATE INDEX object_tags_by_object ON object_tags(object);
    CREATE TABLE jobs(
        name TEXT PRIMARY KEY,
        description TEXT,
        created REAL NOT NULL
    );
    CREATE TABLE job_items(
        job TEXT NOT NULL REFERENCES jobs(name) ON DELETE CASCADE,
        image_id TEXT NOT NULL,
        status TEXT NOT NULL,
        updated REAL NOT NULL,
        PRIMARY KEY(job, image_id)
    );
    CREATE INDEX job_items_by_status ON job_items(job, status, image_id);
    CREATE TABLE issues(
        id INTEGER PRIMARY KEY,
        image_id TEXT NOT NULL,
        text TEXT NOT NULL,
        status TEXT NOT NULL,           -- open | closed
        author TEXT,
        created REAL NOT NULL
    );
    CREATE INDEX issues_by_status ON issues(status, image_id);
    CREATE INDEX issues_by_image ON issues(image_id);
    """,
    # 3: a journal of file actions (copy, move, delete; see picsift.core.files) so a crash mid-action is finished
    # or undone on the next open instead of leaving files and catalog disagreeing
    """
    CREATE TABLE file_actions(
        id INTEGER PRIMARY KEY,
        action TEXT NOT NULL,           -- copy | move | delete
        source TEXT NOT NULL,           -- relative to the library root
        target TEXT,                    -- relative to the library root; NULL for delete
        image_id TEXT NOT NULL,
        dataset TEXT                    -- the dataset the target joins
    );
    """,
    # 4: videos (see picsift.core.video). Their sampled frames are JPEGs in the workspace with ordinary files rows;
    # video_frames links each frame back to its video and moment. A video that cannot be read also has a
    # files row carrying the error, like a bad image.
    """
    CREATE TABLE videos(
        path TEXT PRIMARY KEY,          -- relative to the library root, '/'-separated
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        video_id TEXT,                  -- content hash of the whole file; NULL when it could not be read
        sampling TEXT NOT NULL,         -- JSON: the settings its frames were sampled with
        duration REAL,
        error TEXT,
        indexed_at REAL NOT NULL        -- set only once every frame is committed
    );
    CREATE TABLE video_frames(
        image_id TEXT NOT NULL,
        frame_path TEXT NOT NULL,       -- files.path of the frame JPEG (absolute when outside the root)
        video_path TEXT NOT NULL,       -- relative to the library root
        t_seconds REAL NOT NULL,
        PRIMARY KEY(video_path, frame_path)
    );
    CREATE INDEX video_frames_by_image ON video_frames(image_id);
    CREATE INDEX video_frames_by_frame ON video_frames(frame_path);
    """,
    # 5: a change counter for what decides the labelled objects a search sees (objects, and which images files
    # hold), bumped by triggers, so the object list is recomputed only when it changed (see picsift.core.objects)
    """
    CREATE TABLE change_counters(name TEXT PRIMARY KEY, value INTEGER NOT NULL);
    INSERT INTO change_counters(name, value) VALUES ('objects', 0);
    CREATE TRIGGER objects_inserted AFTER INSERT ON objects
        BEGIN UPDATE change_counters SET value = value + 1 WHERE name = 'objects'; END;
    CREATE TRIGGER objects_updated AFTER UPDATE ON objects
        BEGIN UPDATE change_counters SET value = value + 1 WHERE name = 'objects'; END;
    CREATE TRIGGER objects_deleted AFTER DELETE ON objects
        BEGIN UPDATE change_counters SET value = value + 1 WHERE name = 'objects'; END;
    CREATE TRIGGER files_inserted AFTER INSERT ON files
        BEGIN UPDATE change_counters SET value = value + 1 WHERE name = 'objects'; END;
    CREATE TRIGGER files_updated AFTER UPDATE OF image_id ON files WHEN OLD.image_id IS NOT NEW.image_id
        BEGIN UPDATE change_counters SET value = value + 1 WHERE name = 'objects'; END;
    CREATE TRIGGER files_deleted AFTER DELETE ON files
        BEGIN UPDATE change_counters SET value = value + 1 WHERE name = 'objects'; END;
    """,
]
