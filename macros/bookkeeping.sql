{#- The sync's bookkeeping, kept in the user's warehouse beside their models: the state of
    every synced key, one row per run and model, every row's result, and the per-model lock.

    Schema: the var `stripe_activation_schema`, default `<target schema>_stripe_activation`,
    in the target database. Statements that carry values are rendered with placeholders and
    run with bound values; only identifiers and config are ever in the SQL text. -#}

{% macro bookkeeping_schema() %}
  {{ return(adapter.dispatch('bookkeeping_schema', 'stripe_activation')()) }}
{% endmacro %}

{% macro default__bookkeeping_schema() %}
  {{ return(var('stripe_activation_schema', target.schema ~ '_stripe_activation')) }}
{% endmacro %}


{% macro bookkeeping_relation(name) %}
  {{ return(adapter.dispatch('bookkeeping_relation', 'stripe_activation')(name)) }}
{% endmacro %}

{% macro default__bookkeeping_relation(name) %}
  {{ return(api.Relation.create(database=target.database,
                                schema=stripe_activation.bookkeeping_schema(),
                                identifier=name)) }}
{% endmacro %}


{#- Table -> ordered columns: (name, type label, not null), plus the primary key. Python
    passes rows as dicts and the insert statements take this order. -#}
{% macro bookkeeping_tables() %}
  {{ return(adapter.dispatch('bookkeeping_tables', 'stripe_activation')()) }}
{% endmacro %}

{% macro default__bookkeeping_tables() %}
  {{ return({
    'stripe_sync_state': {
      'columns': [
        ('model_unique_id', 'string', true), ('key_value', 'string', true),
        ('stripe_object', 'string', false), ('stripe_id', 'string', false),
        ('row_hash', 'string', false), ('synced_values', 'string', false),
        ('last_outcome', 'string', false), ('last_error', 'string', false),
        ('synced_at', 'timestamp', false), ('run_id', 'string', false),
      ],
      'primary_key': ['model_unique_id', 'key_value'],
    },
    'stripe_sync_runs': {
      'columns': [
        ('run_id', 'string', true), ('model_unique_id', 'string', true),
        ('command', 'string', false), ('started_at', 'timestamp', false),
        ('finished_at', 'timestamp', false),
        ('created', 'int', false), ('updated', 'int', false), ('unchanged', 'int', false),
        ('rejected', 'int', false), ('not_found', 'int', false), ('failed', 'int', false),
        ('status', 'string', false), ('tool_version', 'string', false),
        ('replaced', 'int', false), ('skipped', 'int', false),
        ('sent', 'int', false), ('already_sent', 'int', false), ('uncertain', 'int', false),
        ('archived', 'int', false), ('deleted', 'int', false), ('locked', 'int', false),
      ],
      'primary_key': ['run_id', 'model_unique_id'],
    },
    'stripe_sync_row_results': {
      'columns': [
        ('run_id', 'string', true), ('model_unique_id', 'string', true),
        ('key_value', 'string', false), ('action', 'string', false),
        ('outcome', 'string', false), ('stripe_id', 'string', false),
        ('error', 'string', false), ('recorded_at', 'timestamp', false),
      ],
      'primary_key': [],
    },
    'stripe_sync_locks': {
      'columns': [
        ('model_unique_id', 'string', true), ('owner', 'string', false),
        ('acquired_at', 'timestamp', false), ('expires_at', 'timestamp', false),
      ],
      'primary_key': ['model_unique_id'],
    },
  }) }}
{% endmacro %}


{% macro bookkeeping_columns(name) %}
  {%- set names = [] -%}
  {%- for column in stripe_activation.bookkeeping_tables()[name]['columns'] -%}
    {%- do names.append(column[0]) -%}
  {%- endfor -%}
  {{ return(names) }}
{% endmacro %}


{% macro bookkeeping_type(label) %}
  {{ return(adapter.dispatch('bookkeeping_type', 'stripe_activation')(label)) }}
{% endmacro %}

{% macro default__bookkeeping_type(label) %}
  {%- if label == 'timestamp' -%}{{ return(dbt.type_timestamp() | trim) }}
  {%- elif label == 'int' -%}{{ return(dbt.type_bigint() | trim) }}
  {%- else -%}{{ return(dbt.type_string() | trim) }}
  {%- endif -%}
{% endmacro %}


{% macro primary_key_clause(columns) %}
  {{ return(adapter.dispatch('primary_key_clause', 'stripe_activation')(columns)) }}
{% endmacro %}

{% macro default__primary_key_clause(columns) %}
  {{ return('primary key (' ~ columns | join(', ') ~ ')') }}
{% endmacro %}

{% macro bigquery__primary_key_clause(columns) %}
  {{ return('primary key (' ~ columns | join(', ') ~ ') not enforced') }}
{% endmacro %}


{% macro bookkeeping_table_ddl(name) %}
  {{ return(adapter.dispatch('bookkeeping_table_ddl', 'stripe_activation')(name)) }}
{% endmacro %}

{% macro default__bookkeeping_table_ddl(name) %}
  {%- set table = stripe_activation.bookkeeping_tables()[name] -%}
  {%- set lines = [] -%}
  {%- for column in table['columns'] -%}
    {%- do lines.append(column[0] ~ ' ' ~ stripe_activation.bookkeeping_type(column[1])
                        ~ (' not null' if column[2] else '')) -%}
  {%- endfor -%}
  {%- if table['primary_key'] -%}
    {%- do lines.append(stripe_activation.primary_key_clause(table['primary_key'])) -%}
  {%- endif -%}
  {{ return('create table if not exists ' ~ stripe_activation.bookkeeping_relation(name)
            ~ ' (\n    ' ~ lines | join(',\n    ') ~ '\n)') }}
{% endmacro %}


{#- Create the schema and whichever tables are missing; return the names created. Reads the
    catalog first, so a role that may write the tables but not create schemas works once
    they exist. A table an older version created gains the columns added since (nullable,
    at the end). Idempotent. -#}
{% macro create_bookkeeping() %}
  {{ return(adapter.dispatch('create_bookkeeping', 'stripe_activation')()) }}
{% endmacro %}

{% macro default__create_bookkeeping() %}
  {%- set schema = stripe_activation.bookkeeping_schema() -%}
  {%- if not adapter.check_schema_exists(target.database, schema) -%}
    {%- do adapter.create_schema(api.Relation.create(database=target.database, schema=schema)) -%}
  {%- endif -%}
  {%- set created = [] -%}
  {%- for name in stripe_activation.bookkeeping_tables() -%}
    {%- set existing = adapter.get_relation(database=target.database, schema=schema, identifier=name) -%}
    {%- if existing is none -%}
      {%- do run_query(stripe_activation.bookkeeping_table_ddl(name)) -%}
      {%- do created.append(name) -%}
    {%- else -%}
      {%- set have = [] -%}
      {%- for column in adapter.get_columns_in_relation(existing) -%}
        {%- do have.append(column.name | lower) -%}
      {%- endfor -%}
      {%- for column in stripe_activation.bookkeeping_tables()[name]['columns'] -%}
        {%- if column[0] not in have -%}
          {%- do run_query('alter table ' ~ stripe_activation.bookkeeping_relation(name) ~ ' add column '
                           ~ column[0] ~ ' ' ~ stripe_activation.bookkeeping_type(column[1])) -%}
        {%- endif -%}
      {%- endfor -%}
    {%- endif -%}
  {%- endfor -%}
  {{ return(created) }}
{% endmacro %}


{#- Bound statements. `n` is how many rows (or keys) the statement carries. -#}

{% macro insert_rows_sql(name, n) %}
  {{ return(adapter.dispatch('insert_rows_sql', 'stripe_activation')(name, n)) }}
{% endmacro %}

{% macro default__insert_rows_sql(name, n) %}
  {%- set columns = stripe_activation.bookkeeping_columns(name) -%}
  {%- set row = stripe_activation.placeholders(columns | length) -%}
  {%- set rows = [] -%}
  {%- for _ in range(n) -%}{%- do rows.append(row) -%}{%- endfor -%}
  {{ return('insert into ' ~ stripe_activation.bound_text(stripe_activation.bookkeeping_relation(name))
            ~ ' (' ~ columns | join(', ') ~ ')\nvalues ' ~ rows | join(',\n       ')) }}
{% endmacro %}


{#- The synced values stored for some keys: read before they are replaced, for outcomes that
    keep what the state had. -#}
{% macro state_synced_values_sql(n) %}
  {{ return(adapter.dispatch('state_synced_values_sql', 'stripe_activation')(n)) }}
{% endmacro %}

{% macro default__state_synced_values_sql(n) %}
  {%- set b = stripe_activation.binding_char() -%}
  {{ return('select key_value, synced_values from '
            ~ stripe_activation.bound_text(stripe_activation.bookkeeping_relation('stripe_sync_state'))
            ~ ' where model_unique_id = ' ~ b ~ ' and key_value in ' ~ stripe_activation.placeholders(n)) }}
{% endmacro %}


{% macro state_delete_keys_sql(n) %}
  {{ return(adapter.dispatch('state_delete_keys_sql', 'stripe_activation')(n)) }}
{% endmacro %}

{% macro default__state_delete_keys_sql(n) %}
  {%- set b = stripe_activation.binding_char() -%}
  {{ return('delete from '
            ~ stripe_activation.bound_text(stripe_activation.bookkeeping_relation('stripe_sync_state'))
            ~ ' where model_unique_id = ' ~ b ~ ' and key_value in ' ~ stripe_activation.placeholders(n)) }}
{% endmacro %}


{% macro state_count_sql() %}
  {{ return(adapter.dispatch('state_count_sql', 'stripe_activation')()) }}
{% endmacro %}

{% macro default__state_count_sql() %}
  {{ return('select count(*) from '
            ~ stripe_activation.bound_text(stripe_activation.bookkeeping_relation('stripe_sync_state'))
            ~ ' where model_unique_id = ' ~ stripe_activation.binding_char()) }}
{% endmacro %}


{% macro state_reset_sql() %}
  {{ return(adapter.dispatch('state_reset_sql', 'stripe_activation')()) }}
{% endmacro %}

{% macro default__state_reset_sql() %}
  {{ return('delete from '
            ~ stripe_activation.bound_text(stripe_activation.bookkeeping_relation('stripe_sync_state'))
            ~ ' where model_unique_id = ' ~ stripe_activation.binding_char()) }}
{% endmacro %}


{% macro run_delete_sql() %}
  {{ return(adapter.dispatch('run_delete_sql', 'stripe_activation')()) }}
{% endmacro %}

{% macro default__run_delete_sql() %}
  {%- set b = stripe_activation.binding_char() -%}
  {{ return('delete from '
            ~ stripe_activation.bound_text(stripe_activation.bookkeeping_relation('stripe_sync_runs'))
            ~ ' where run_id = ' ~ b ~ ' and model_unique_id = ' ~ b) }}
{% endmacro %}


{#- The lock: clear it when expired (or already ours), then insert; the primary key on
    model_unique_id makes the insert of a second concurrent sync fail. -#}
{% macro lock_clear_sql() %}
  {{ return(adapter.dispatch('lock_clear_sql', 'stripe_activation')()) }}
{% endmacro %}

{% macro default__lock_clear_sql() %}
  {%- set b = stripe_activation.binding_char() -%}
  {{ return('delete from '
            ~ stripe_activation.bound_text(stripe_activation.bookkeeping_relation('stripe_sync_locks'))
            ~ ' where model_unique_id = ' ~ b ~ ' and (expires_at < ' ~ b ~ ' or owner = ' ~ b ~ ')') }}
{% endmacro %}


{% macro lock_select_sql() %}
  {{ return(adapter.dispatch('lock_select_sql', 'stripe_activation')()) }}
{% endmacro %}

{% macro default__lock_select_sql() %}
  {{ return('select owner, expires_at from '
            ~ stripe_activation.bound_text(stripe_activation.bookkeeping_relation('stripe_sync_locks'))
            ~ ' where model_unique_id = ' ~ stripe_activation.binding_char()) }}
{% endmacro %}


{% macro lock_release_sql() %}
  {{ return(adapter.dispatch('lock_release_sql', 'stripe_activation')()) }}
{% endmacro %}

{% macro default__lock_release_sql() %}
  {%- set b = stripe_activation.binding_char() -%}
  {{ return('delete from '
            ~ stripe_activation.bound_text(stripe_activation.bookkeeping_relation('stripe_sync_locks'))
            ~ ' where model_unique_id = ' ~ b ~ ' and owner = ' ~ b) }}
{% endmacro %}


{#- Updates recorded for a model's keys since a time (bound), with each key's synced values:
    a group limit (a subscription's 200 quantity updates an hour) counts by them. -#}
{% macro recent_updates_sql() %}
  {{ return(adapter.dispatch('recent_updates_sql', 'stripe_activation')()) }}
{% endmacro %}

{% macro default__recent_updates_sql() %}
  {%- set b = stripe_activation.binding_char() -%}
  {%- set results = stripe_activation.bound_text(stripe_activation.bookkeeping_relation('stripe_sync_row_results')) -%}
  {%- set state = stripe_activation.bound_text(stripe_activation.bookkeeping_relation('stripe_sync_state')) -%}
  {{ return('select r.key_value, count(*), s.synced_values from ' ~ results ~ ' r join ' ~ state
            ~ ' s on s.model_unique_id = r.model_unique_id and s.key_value = r.key_value'
            ~ ' where r.model_unique_id = ' ~ b ~ ' and r.outcome = ' ~ b
            ~ ' and r.recorded_at >= ' ~ b ~ ' group by r.key_value, s.synced_values') }}
{% endmacro %}


{#- A bulk load of rows from a CSV file the Python package wrote (header, every column of
    the table in order): many rows for one statement. An adapter without a fast file load
    returns '' and the rows go in bound INSERT statements instead. DuckDB is told the whole
    dialect and auto_detect = false: it sniffs the file even when given the columns, 20 ms of
    a 2,000-row load that takes 2 ms without. -#}
{% macro bulk_insert_sql(name, path) %}
  {{ return(adapter.dispatch('bulk_insert_sql', 'stripe_activation')(name, path)) }}
{% endmacro %}

{% macro default__bulk_insert_sql(name, path) %}
  {{ return('') }}
{% endmacro %}

{% macro duckdb__bulk_insert_sql(name, path) %}
  {%- set types = [] -%}
  {%- for column in stripe_activation.bookkeeping_tables()[name]['columns'] -%}
    {%- do types.append("'" ~ column[0] ~ "': '" ~ stripe_activation.bookkeeping_type(column[1]) ~ "'") -%}
  {%- endfor -%}
  {{ return('insert into ' ~ stripe_activation.bookkeeping_relation(name)
            ~ ' select * from read_csv(' ~ stripe_activation.string_literal(path)
            ~ ', header = true, delim = \',\', quote = \'"\', escape = \'"\', nullstr = \'\\N\''
            ~ ', auto_detect = false, columns = {'
            ~ types | join(', ') ~ '})') }}
{% endmacro %}


{#- Acknowledged events: the in-flight marks of `n` chunks (each written under a mark run id
    of its own) get their row results, then become `sent` under the run's id: two
    statements, each one scan of the state, for any number of rows. -#}
{% macro state_ack_sql(n) %}
  {{ return(adapter.dispatch('state_ack_sql', 'stripe_activation')(n)) }}
{% endmacro %}

{% macro default__state_ack_sql(n) %}
  {%- set b = stripe_activation.binding_char() -%}
  {{ return('update '
            ~ stripe_activation.bound_text(stripe_activation.bookkeeping_relation('stripe_sync_state'))
            ~ ' set last_outcome = ' ~ b ~ ', run_id = ' ~ b
            ~ ' where model_unique_id = ' ~ b ~ ' and run_id in '
            ~ stripe_activation.placeholders(n)) }}
{% endmacro %}

{% macro row_results_from_state_sql(n) %}
  {{ return(adapter.dispatch('row_results_from_state_sql', 'stripe_activation')(n)) }}
{% endmacro %}

{% macro default__row_results_from_state_sql(n) %}
  {%- set b = stripe_activation.binding_char() -%}
  {{ return('insert into '
            ~ stripe_activation.bound_text(stripe_activation.bookkeeping_relation('stripe_sync_row_results'))
            ~ ' (run_id, model_unique_id, key_value, action, outcome, stripe_id, error, recorded_at)'
            ~ ' select ' ~ b ~ ', model_unique_id, key_value, ' ~ b ~ ', ' ~ b ~ ', stripe_id, last_error, ' ~ b
            ~ ' from ' ~ stripe_activation.bound_text(stripe_activation.bookkeeping_relation('stripe_sync_state'))
            ~ ' where model_unique_id = ' ~ b ~ ' and run_id in '
            ~ stripe_activation.placeholders(n)) }}
{% endmacro %}
