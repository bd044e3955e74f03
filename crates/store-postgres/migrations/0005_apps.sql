-- Application management: registered card applications and functions, each card's function
-- states (with a pending change produced as a script) and their history.

CREATE TABLE card_apps (
    code TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    aid_hex TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    files_json TEXT NOT NULL,
    key_purposes TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);

CREATE TABLE card_app_functions (
    code TEXT PRIMARY KEY,
    app TEXT NOT NULL REFERENCES card_apps (code),
    name TEXT NOT NULL,
    target_json TEXT NOT NULL,
    parameters_hex TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE INDEX card_app_functions_app ON card_app_functions (app, code);

CREATE TABLE card_function_states (
    number TEXT NOT NULL REFERENCES cards (number),
    function TEXT NOT NULL REFERENCES card_app_functions (code),
    enabled BOOLEAN NOT NULL,
    pending BOOLEAN,
    version BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (number, function)
);

CREATE TABLE card_function_events (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    number TEXT NOT NULL REFERENCES cards (number),
    function TEXT NOT NULL REFERENCES card_app_functions (code),
    action TEXT NOT NULL,
    sw INTEGER,
    actor TEXT NOT NULL,
    at_ms BIGINT NOT NULL
);
CREATE INDEX card_function_events_number ON card_function_events (number, id);
