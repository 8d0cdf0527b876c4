{#- The diff: the model's rows against the sync state, in one pass of SQL, so only rows that
    need a Stripe call leave the warehouse.

    Arguments (rendered by the Python package for one model):
      relation_name   the model's relation, as the manifest renders it (already quoted)
      columns         the model columns the sync reads, key first, as the warehouse names them
      key_column      the key column (also columns[0])
      casefold        keys compare lowercased (the object's key kind says so: email)
      references      one {column_index, model_unique_id, casefold, same_account} per field
                      filled from another synced model: its state's stripe_id for the
                      column's key (in the row's own account, when both are account-scoped)
      model_unique_id and fingerprint: config, rendered as literals
      scope           {account_column, shard}: keys are `<account>/<key>` when the model
                      names an account column (util.sql: scoped_key); --shard K/N keeps the
                      rows and state rows of the accounts in that shard

    The select returns, by position: each column of `columns`, then the normalized key, the
    row hash, how many rows share the key, the status, and the state's key, stripe_id,
    row_hash, synced_values, last_outcome, last_error, synced_at (null when the key has no
    state), then
    one resolved Stripe id per reference (null when the referenced model has none). The
    resolved ids are part of the row hash: a row whose reference resolves differently is
    planned again. -#}

{#- The diff is built from parts, each a query text used as a subquery (never a CTE
    referenced twice, which DuckDB materializes whole):
      model    the model's rows in scope: _sa_c0.., _sa_key, _sa_ref0.. and, with_hash, _sa_hash
      state    the model's state rows in scope
      keys     one row per key of the model or its state: _sa_key, _sa_rows_per_key (model
               rows with the key, 0 for a key only the state has), _sa_hash (the model row's,
               when one), _sa_last_outcome and _sa_status ('removed' for a state-only key)
    `keys` is one aggregate of the model's keys and hashes and the state's keys, hashes and
    outcomes: no join of two model-sized inputs and no window over every column, so the
    warehouse needs little memory for any model size (an embedded DuckDB spills the
    aggregate under its cap; a join of two model-sized sides outgrew it). -#}
{% macro diff_parts(relation_name, columns, key_column, casefold, model_unique_id, fingerprint, references=[], scope={}) %}
  {{ return(adapter.dispatch('diff_parts', 'stripe_activation')(
      relation_name, columns, key_column, casefold, model_unique_id, fingerprint, references, scope)) }}
{% endmacro %}

{% macro default__diff_parts(relation_name, columns, key_column, casefold, model_unique_id, fingerprint, references=[], scope={}) %}
  {%- set text = dbt.type_string() | trim -%}
  {%- set quoted = [] -%}
  {%- for column in columns -%}
    {%- do quoted.append(stripe_activation.quote_identifier(column)) -%}
  {%- endfor -%}
  {%- set key_sql = stripe_activation.state_key_sql(key_column, casefold, scope) -%}
  {%- set hashed = [] -%}
  {%- for q in quoted -%}{%- do hashed.append('_sa_source._sa_c' ~ loop.index0) -%}{%- endfor -%}
  {%- for ref in references -%}{%- do hashed.append('_sa_r' ~ loop.index0 ~ '.stripe_id') -%}{%- endfor -%}
  {%- set model_parts = {} -%}
  {%- for with_hash in [true, false] -%}
    {%- set model_sql -%}
select
    _sa_source.*
    {%- for ref in references %},
    _sa_r{{ loop.index0 }}.stripe_id as _sa_ref{{ loop.index0 }}
    {%- endfor %}
    {%- if with_hash %},
    {{ stripe_activation.row_hash(hashed, fingerprint) }} as _sa_hash
    {%- endif %}
from (
    select
        {%- for q in quoted %}
        {{ q }} as _sa_c{{ loop.index0 }},
        {%- endfor %}
        {{ key_sql }} as _sa_key
    from {{ relation_name }}
    where {{ stripe_activation.source_in_scope(scope) }}
) as _sa_source
{{ stripe_activation.reference_joins(references, scope) }}
    {%- endset -%}
    {%- do model_parts.update({with_hash: model_sql}) -%}
  {%- endfor -%}
  {#- The row hash again, over the columns of a model part aliased `_sa_m` (hash-less): for
      the rows that share a key, whose hashes the aggregate does not keep one by one. #}
  {%- set rehashed = [] -%}
  {%- for q in quoted -%}{%- do rehashed.append('_sa_m._sa_c' ~ loop.index0) -%}{%- endfor -%}
  {%- for ref in references -%}{%- do rehashed.append('_sa_m._sa_ref' ~ loop.index0) -%}{%- endfor -%}
  {%- set state_sql -%}
select key_value, stripe_id, row_hash, synced_values, last_outcome, last_error, synced_at
from {{ stripe_activation.bookkeeping_relation('stripe_sync_state') }} as _sa_st
where model_unique_id = {{ stripe_activation.string_literal(model_unique_id) }}
  and {{ stripe_activation.state_in_scope('_sa_st', scope) }}
  {%- endset -%}
  {%- set keys_sql -%}
select
    _sa_key,
    _sa_rows_per_key,
    _sa_hash,
    _sa_last_outcome,
    case
        when _sa_rows_per_key = 0 then 'removed'
        when _sa_key is null or _sa_rows_per_key > 1 then 'invalid_key'
        when _sa_in_state = 0 then 'new'
        when _sa_state_hash is null or _sa_state_hash <> _sa_hash then 'changed'
        when _sa_last_outcome in ('failed', 'in_flight') then 'retry'
        when _sa_last_outcome in ('rejected', 'not_found', 'uncertain', 'locked') then 'unsynced'
        else 'unchanged'
    end as _sa_status
from (
    select
        _sa_key,
        sum(_sa_model_row) as _sa_rows_per_key,
        max(_sa_hash) as _sa_hash,
        max(_sa_state_hash) as _sa_state_hash,
        max(_sa_last_outcome) as _sa_last_outcome,
        max(_sa_state_row) as _sa_in_state
    from (
        select _sa_key, 1 as _sa_model_row, _sa_hash,
            cast(null as {{ text }}) as _sa_state_hash,
            cast(null as {{ text }}) as _sa_last_outcome, 0 as _sa_state_row
        from ({{ model_parts[true] }}) as _sa_model
        union all
        select key_value, 0, cast(null as {{ text }}), row_hash, last_outcome, 1
        from ({{ state_sql }}) as _sa_state
    ) as _sa_both
    group by _sa_key
) as _sa_grouped
  {%- endset -%}
  {{ return({'model': model_parts[true], 'model_without_hash': model_parts[false],
             'state': state_sql, 'keys': keys_sql,
             'rehash': stripe_activation.row_hash(rehashed, fingerprint)}) }}
{% endmacro %}


{#- Without a keys table: the model's rows left-joined to the state (the state is the
    join's stored side: the shape for a model whose keys are mostly new, as a first sync's,
    whose state is small), keys shared by several rows from a group-by of the key column. -#}
{% macro diff_ctes(relation_name, columns, key_column, casefold, model_unique_id, fingerprint, references=[], scope={}) %}
  {{ return(adapter.dispatch('diff_ctes', 'stripe_activation')(
      relation_name, columns, key_column, casefold, model_unique_id, fingerprint, references, scope)) }}
{% endmacro %}

{% macro default__diff_ctes(relation_name, columns, key_column, casefold, model_unique_id, fingerprint, references=[], scope={}) %}
  {%- set quoted = [] -%}
  {%- for column in columns -%}
    {%- do quoted.append(stripe_activation.quote_identifier(column)) -%}
  {%- endfor -%}
  {%- set key_sql = stripe_activation.state_key_sql(key_column, casefold, scope) -%}
  {%- set hashed = [] -%}
  {%- for q in quoted -%}{%- do hashed.append('_sa_source._sa_c' ~ loop.index0) -%}{%- endfor -%}
  {%- for ref in references -%}{%- do hashed.append('_sa_r' ~ loop.index0 ~ '.stripe_id') -%}{%- endfor -%}
  {%- set sql -%}
with _sa_source as (
    select
        {%- for q in quoted %}
        {{ q }} as _sa_c{{ loop.index0 }},
        {%- endfor %}
        {{ key_sql }} as _sa_key
    from {{ relation_name }}
    where {{ stripe_activation.source_in_scope(scope) }}
),
_sa_model as (
    select
        _sa_source.*,
        {%- for ref in references %}
        _sa_r{{ loop.index0 }}.stripe_id as _sa_ref{{ loop.index0 }},
        {%- endfor %}
        {{ stripe_activation.row_hash(hashed, fingerprint) }} as _sa_hash
    from _sa_source
    {{ stripe_activation.reference_joins(references, scope) }}
),
{#- Keys shared by several rows, from a second read of the key column alone: a window over
    the model would hold every row's columns at once (a 10M-row model outgrew DuckDB's cap). #}
_sa_shared as (
    select _sa_key, count(*) as _sa_rows_per_key
    from (
        select {{ key_sql }} as _sa_key
        from {{ relation_name }}
        where {{ stripe_activation.source_in_scope(scope) }}
    ) as _sa_keys
    where _sa_key is not null
    group by _sa_key
    having count(*) > 1
),
_sa_counted as (
    select _sa_model.*, coalesce(_sa_shared._sa_rows_per_key, 1) as _sa_rows_per_key
    from _sa_model
    left join _sa_shared on _sa_shared._sa_key = _sa_model._sa_key
),
_sa_state as (
    select key_value, stripe_id, row_hash, synced_values, last_outcome, last_error, synced_at
    from {{ stripe_activation.bookkeeping_relation('stripe_sync_state') }} as _sa_st
    where model_unique_id = {{ stripe_activation.string_literal(model_unique_id) }}
      and {{ stripe_activation.state_in_scope('_sa_st', scope) }}
),
_sa_classified as (
    select
        _sa_counted.*,
        _sa_state.key_value as _sa_state_key,
        _sa_state.stripe_id as _sa_stripe_id,
        _sa_state.row_hash as _sa_state_hash,
        _sa_state.synced_values as _sa_synced_values,
        _sa_state.last_outcome as _sa_last_outcome,
        _sa_state.last_error as _sa_last_error,
        _sa_state.synced_at as _sa_synced_at,
        case
            when _sa_counted._sa_key is null or _sa_counted._sa_rows_per_key > 1
                then 'invalid_key'
            when _sa_state.key_value is null then 'new'
            when _sa_state.row_hash is null or _sa_state.row_hash <> _sa_counted._sa_hash
                then 'changed'
            when _sa_state.last_outcome in ('failed', 'in_flight') then 'retry'
            when _sa_state.last_outcome in ('rejected', 'not_found', 'uncertain', 'locked') then 'unsynced'
            else 'unchanged'
        end as _sa_status
    from _sa_counted
    left join _sa_state on _sa_state.key_value = _sa_counted._sa_key
)
  {%- endset -%}
  {{ return(sql) }}
{% endmacro %}


{% macro diff_select_joined_sql(relation_name, columns, key_column, casefold, model_unique_id, fingerprint, references=[], full_resync=false, scope={}) %}
  {%- set sql -%}
{{ stripe_activation.diff_ctes(relation_name, columns, key_column, casefold, model_unique_id, fingerprint, references, scope) }}
select
    {%- for column in columns %}
    _sa_c{{ loop.index0 }},
    {%- endfor %}
    _sa_key,
    _sa_hash,
    case when _sa_key is null then 1 else _sa_rows_per_key end as _sa_rows_per_key,
    _sa_status,
    _sa_state_key,
    _sa_stripe_id,
    _sa_state_hash,
    _sa_synced_values,
    _sa_last_outcome,
    _sa_last_error,
    _sa_synced_at
    {%- for ref in references %},
    _sa_ref{{ loop.index0 }}
    {%- endfor %}
from _sa_classified
{%- if not full_resync %}
where _sa_status <> 'unchanged'
{%- endif %}
{%- if scope.get('account_column') %}
{#- Accounts interleaved, so one slow or rate-limited account does not hold every worker. #}
order by {{ dbt.hash('_sa_key') }}
{%- endif %}
  {%- endset -%}
  {{ return(sql) }}
{% endmacro %}


{#- Rows needing a decision: invalid keys, new, changed, retry; with full_resync also the
    unchanged ones (status 'unchanged', which the Python side reports as resync). With
    `keys_table` (diff_keys_table_sql's, made by the counts on this connection, without
    full_resync), the keys' statuses are read from it, not aggregated again. The keys
    to act on (few, unless the model is new) are joined to the model and to the state, so
    the state's payload (synced values) is read for those keys only. -#}
{% macro diff_select_sql(relation_name, columns, key_column, casefold, model_unique_id, fingerprint, references=[], full_resync=false, scope={}, keys_table=none) %}
  {{ return(adapter.dispatch('diff_select_sql', 'stripe_activation')(
      relation_name, columns, key_column, casefold, model_unique_id, fingerprint, references, full_resync, scope, keys_table)) }}
{% endmacro %}

{% macro default__diff_select_sql(relation_name, columns, key_column, casefold, model_unique_id, fingerprint, references=[], full_resync=false, scope={}, keys_table=none) %}
  {%- if not keys_table -%}
    {{ return(stripe_activation.diff_select_joined_sql(relation_name, columns, key_column, casefold, model_unique_id, fingerprint, references, full_resync, scope)) }}
  {%- endif -%}
  {%- set parts = stripe_activation.diff_parts(relation_name, columns, key_column, casefold, model_unique_id, fingerprint, references, scope) -%}
  {%- set skipped = ['removed'] if full_resync else ['removed', 'unchanged'] -%}
  {#- The keys to act on meet the model's rows first (the model's columns travel with them),
      then the state's: neither join keeps a model-sized side, and the state's payload
      (synced values) is read for those keys only. '' is never a key (normalized_key makes
      it null): the rows without a key join on it. The row hash is computed again for these
      rows only. #}
  {%- set sql -%}
select
    {%- for column in columns %}
    _sa_m._sa_c{{ loop.index0 }},
    {%- endfor %}
    _sa_m._sa_key,
    {{ parts['rehash'] }} as _sa_hash,
    case when _sa_m._sa_key is null then 1 else _sa_m._sa_rows_per_key end as _sa_rows_per_key,
    _sa_m._sa_status,
    _sa_state.key_value as _sa_state_key,
    _sa_state.stripe_id as _sa_stripe_id,
    _sa_state.row_hash as _sa_state_hash,
    _sa_state.synced_values as _sa_synced_values,
    _sa_state.last_outcome as _sa_last_outcome,
    _sa_state.last_error as _sa_last_error,
    _sa_state.synced_at as _sa_synced_at
    {%- for ref in references %},
    _sa_m._sa_ref{{ loop.index0 }}
    {%- endfor %}
from (
    select _sa_model.*, _sa_todo._sa_rows_per_key, _sa_todo._sa_status
    from ({{ parts['model_without_hash'] }}) as _sa_model
    inner join (
        select _sa_key as _sa_todo_key, _sa_rows_per_key, _sa_status
        from {{ stripe_activation.quote_identifier(keys_table) }} as _sa_keys
        where _sa_status not in ({{ "'" ~ skipped | join("', '") ~ "'" }})
    ) as _sa_todo on coalesce(_sa_todo._sa_todo_key, '') = coalesce(_sa_model._sa_key, '')
) as _sa_m
left join ({{ parts['state'] }}) as _sa_state on _sa_state.key_value = _sa_m._sa_key
{%- if scope.get('account_column') %}
{#- Accounts interleaved, so one slow or rate-limited account does not hold every worker. #}
order by {{ dbt.hash('_sa_m._sa_key') }}
{%- endif %}
  {%- endset -%}
  {{ return(sql) }}
{% endmacro %}


{#- One row: total, new, changed, unchanged, retry, invalid_key, unsynced (unchanged since a
    run that rejected them or found no match), removed (keys in state that the model no longer
    has). Sums are null on an empty model. -#}
{% macro diff_counts_sql(relation_name, columns, key_column, casefold, model_unique_id, fingerprint, references=[], scope={}) %}
  {{ return(adapter.dispatch('diff_counts_sql', 'stripe_activation')(
      relation_name, columns, key_column, casefold, model_unique_id, fingerprint, references, scope)) }}
{% endmacro %}

{% macro default__diff_counts_sql(relation_name, columns, key_column, casefold, model_unique_id, fingerprint, references=[], scope={}) %}
  {%- set parts = stripe_activation.diff_parts(relation_name, columns, key_column, casefold, model_unique_id, fingerprint, references, scope) -%}
  {%- set sql -%}
select
    sum(_sa_rows_per_key) as _sa_total,
    sum(case when _sa_status = 'new' then 1 else 0 end) as _sa_new,
    sum(case when _sa_status = 'changed' then 1 else 0 end) as _sa_changed,
    sum(case when _sa_status = 'unchanged' then 1 else 0 end) as _sa_unchanged,
    sum(case when _sa_status = 'retry' then 1 else 0 end) as _sa_retry,
    sum(case when _sa_status = 'invalid_key' then _sa_rows_per_key else 0 end) as _sa_invalid_key,
    sum(case when _sa_status = 'unsynced' then 1 else 0 end) as _sa_unsynced,
    sum(case when _sa_status = 'removed' and coalesce(_sa_last_outcome, '') not in ('archived', 'deleted', 'locked') then 1 else 0 end) as _sa_removed
from ({{ parts['keys'] }}) as _sa_keys
  {%- endset -%}
  {{ return(sql) }}
{% endmacro %}


{#- A temporary table of the keys whose status is not 'unchanged' (the removed ones
    included): the counts read it, and the select of the same connection joins it instead of
    aggregating the model and the state a second time, so the model is aggregated once per
    run. Renders '' where the adapter has no temporary table of a session (the caller then
    runs diff_counts_sql and the select's own aggregate). -#}
{% macro diff_keys_table_sql(table, relation_name, columns, key_column, casefold, model_unique_id, fingerprint, references=[], scope={}) %}
  {{ return(adapter.dispatch('diff_keys_table_sql', 'stripe_activation')(
      table, relation_name, columns, key_column, casefold, model_unique_id, fingerprint, references, scope)) }}
{% endmacro %}

{% macro default__diff_keys_table_sql(table, relation_name, columns, key_column, casefold, model_unique_id, fingerprint, references=[], scope={}) %}
  {{ return('') }}
{% endmacro %}

{% macro temporary_keys_table_sql(table, relation_name, columns, key_column, casefold, model_unique_id, fingerprint, references=[], scope={}) %}
  {%- set parts = stripe_activation.diff_parts(relation_name, columns, key_column, casefold, model_unique_id, fingerprint, references, scope) -%}
  {%- set sql -%}
create temporary table {{ stripe_activation.quote_identifier(table) }} as
select _sa_key, _sa_rows_per_key, _sa_last_outcome, _sa_status
from ({{ parts['keys'] }}) as _sa_keys
where _sa_status <> 'unchanged'
  {%- endset -%}
  {{ return(sql) }}
{% endmacro %}

{% macro duckdb__diff_keys_table_sql(table, relation_name, columns, key_column, casefold, model_unique_id, fingerprint, references=[], scope={}) %}
  {{ return(stripe_activation.temporary_keys_table_sql(table, relation_name, columns, key_column, casefold, model_unique_id, fingerprint, references, scope)) }}
{% endmacro %}

{% macro postgres__diff_keys_table_sql(table, relation_name, columns, key_column, casefold, model_unique_id, fingerprint, references=[], scope={}) %}
  {{ return(stripe_activation.temporary_keys_table_sql(table, relation_name, columns, key_column, casefold, model_unique_id, fingerprint, references, scope)) }}
{% endmacro %}


{#- diff_counts_sql's row from a keys table: the unchanged rows are the model's rows that
    no key of the table has. -#}
{% macro diff_counts_from_table_sql(table, relation_name, scope={}) %}
  {{ return(adapter.dispatch('diff_counts_from_table_sql', 'stripe_activation')(table, relation_name, scope)) }}
{% endmacro %}

{% macro default__diff_counts_from_table_sql(table, relation_name, scope={}) %}
  {%- set sql -%}
select
    _sa_model_rows._sa_total,
    _sa_counts._sa_new,
    _sa_counts._sa_changed,
    _sa_model_rows._sa_total - coalesce(_sa_counts._sa_acting, 0) as _sa_unchanged,
    _sa_counts._sa_retry,
    _sa_counts._sa_invalid_key,
    _sa_counts._sa_unsynced,
    _sa_counts._sa_removed
from (
    select count(*) as _sa_total from {{ relation_name }}
    where {{ stripe_activation.source_in_scope(scope) }}
) as _sa_model_rows
cross join (
    select
        sum(case when _sa_status <> 'removed' then _sa_rows_per_key else 0 end) as _sa_acting,
        sum(case when _sa_status = 'new' then 1 else 0 end) as _sa_new,
        sum(case when _sa_status = 'changed' then 1 else 0 end) as _sa_changed,
        sum(case when _sa_status = 'retry' then 1 else 0 end) as _sa_retry,
        sum(case when _sa_status = 'invalid_key' then _sa_rows_per_key else 0 end) as _sa_invalid_key,
        sum(case when _sa_status = 'unsynced' then 1 else 0 end) as _sa_unsynced,
        sum(case when _sa_status = 'removed' and coalesce(_sa_last_outcome, '') not in ('archived', 'deleted', 'locked') then 1 else 0 end) as _sa_removed
    from {{ stripe_activation.quote_identifier(table) }}
) as _sa_counts
  {%- endset -%}
  {{ return(sql) }}
{% endmacro %}


{#- Up to `limit` keys in state that the model no longer has, in key order. -#}
{% macro removed_keys_sql(relation_name, key_column, casefold, model_unique_id, limit, scope={}) %}
  {{ return(adapter.dispatch('removed_keys_sql', 'stripe_activation')(
      relation_name, key_column, casefold, model_unique_id, limit, scope)) }}
{% endmacro %}

{% macro default__removed_keys_sql(relation_name, key_column, casefold, model_unique_id, limit, scope={}) %}
  {%- set key_sql = stripe_activation.state_key_sql(key_column, casefold, scope) -%}
  {%- set sql -%}
with _sa_model_keys as (
    select distinct {{ key_sql }} as _sa_key from {{ relation_name }}
    where {{ stripe_activation.source_in_scope(scope) }}
)
select _sa_state.key_value
from {{ stripe_activation.bookkeeping_relation('stripe_sync_state') }} as _sa_state
where _sa_state.model_unique_id = {{ stripe_activation.string_literal(model_unique_id) }}
  and {{ stripe_activation.not_removed('_sa_state') }}
  and {{ stripe_activation.state_in_scope('_sa_state', scope) }}
  and not exists (
      select 1 from _sa_model_keys where _sa_model_keys._sa_key = _sa_state.key_value
  )
order by _sa_state.key_value
limit {{ limit | int }}
  {%- endset -%}
  {{ return(sql) }}
{% endmacro %}


{#- The condition that a state row's object was not removed by on_removed (archived or
    deleted) nor is final in Stripe (locked: a delete would be refused): `outcomes` narrows
    it. -#}
{% macro not_removed(alias, outcomes=['archived', 'deleted', 'locked']) %}
  {%- set quoted = [] -%}
  {%- for o in outcomes -%}{%- do quoted.append(stripe_activation.string_literal(o)) -%}{%- endfor -%}
  {{- 'coalesce(' ~ alias ~ ".last_outcome, '') not in (" ~ quoted | join(', ') ~ ')' -}}
{% endmacro %}


{#- on_removed: the state rows whose key left the model and whose object Stripe still
    holds (a Stripe id, not archived or deleted yet), in key order: key_value, stripe_id,
    synced_values, synced_at. With count_only: one row, how many, how many keys the model
    has synced (the base of --max-removed P%), and how many keys the model has now. -#}
{% macro removed_rows_sql(relation_name, key_column, casefold, model_unique_id, count_only=false, scope={}) %}
  {{ return(adapter.dispatch('removed_rows_sql', 'stripe_activation')(
      relation_name, key_column, casefold, model_unique_id, count_only, scope)) }}
{% endmacro %}

{% macro default__removed_rows_sql(relation_name, key_column, casefold, model_unique_id, count_only=false, scope={}) %}
  {%- set key_sql = stripe_activation.state_key_sql(key_column, casefold, scope) -%}
  {%- set sql -%}
with _sa_model_keys as (
    select distinct {{ key_sql }} as _sa_key from {{ relation_name }}
    where {{ stripe_activation.source_in_scope(scope) }}
),
_sa_live as (
    select key_value, stripe_id, synced_values, synced_at
    from {{ stripe_activation.bookkeeping_relation('stripe_sync_state') }} as _sa_state
    where _sa_state.model_unique_id = {{ stripe_activation.string_literal(model_unique_id) }}
      and _sa_state.stripe_id is not null
      and {{ stripe_activation.not_removed('_sa_state') }}
      and {{ stripe_activation.state_in_scope('_sa_state', scope) }}
),
_sa_gone as (
    select _sa_live.* from _sa_live
    where not exists (
        select 1 from _sa_model_keys where _sa_model_keys._sa_key = _sa_live.key_value
    )
)
{%- if count_only %}
select
    (select count(*) from _sa_gone) as _sa_removed,
    (select count(*) from _sa_live) as _sa_synced,
    (select count(*) from _sa_model_keys) as _sa_model_rows
{%- else %}
select key_value, stripe_id, synced_values, synced_at from _sa_gone order by key_value
{%- endif %}
  {%- endset -%}
  {{ return(sql) }}
{% endmacro %}


{#- A left join of the state of each referenced model, on the row's normalized key (in the
    row's own account when both models are account-scoped): `_sa_r<i>.stripe_id` is the
    Stripe id the reference resolves to. Both diff queries resolve references through it. -#}
{% macro reference_joins(references, scope) %}
{%- for ref in references %}
left join {{ stripe_activation.bookkeeping_relation('stripe_sync_state') }} as _sa_r{{ loop.index0 }}
    on _sa_r{{ loop.index0 }}.model_unique_id = {{ stripe_activation.string_literal(ref['model_unique_id']) }}
    {%- set ref_key = stripe_activation.normalized_key('_sa_source._sa_c' ~ ref['column_index'], ref['casefold']) %}
    {%- if ref.get('same_account') %}
    {%- set row_account = stripe_activation.normalized_key('_sa_source._sa_c' ~ scope['account_index'], false) %}
    {%- set ref_key = stripe_activation.scoped_key(ref_key, row_account) %}
    {%- endif %}
    and _sa_r{{ loop.index0 }}.key_value = {{ ref_key }}
    and {{ stripe_activation.not_removed('_sa_r' ~ loop.index0, ['deleted']) }}
{%- endfor %}
{% endmacro %}
