-- Who used a record's data, newest first: the citizen's view of the audit log.
CREATE INDEX audit_log_record ON audit_log (record, seq);
