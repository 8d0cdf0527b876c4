{#- The validation post-hook: `+post-hook: "{{ stripe_activation.validate() }}"`.

    During `dbt run` it checks a model's `stripe_activation` block against the relation just
    built, so a broken sync fails the dbt run, before anything reaches Stripe: the object and
    behavior are known, the key is declared, every mapped column and the key column exist,
    and the key has no null, empty or duplicated value (compared as the sync compares keys).
    A model without the block is left alone. It renders no SQL: hooks may only run SQL, and
    the checks run while the hook is rendered. -#}

{% macro validate() %}
  {{ return(adapter.dispatch('validate', 'stripe_activation')()) }}
{% endmacro %}

{% macro default__validate() %}
  {%- if not execute or model is not mapping -%}{{ return('') }}{%- endif -%}
  {%- set config_meta = (model.get('config') or {}).get('meta') or {} -%}
  {%- set block = config_meta.get('stripe_activation', (model.get('meta') or {}).get('stripe_activation')) -%}
  {%- if block is none -%}{{ return('') }}{%- endif -%}
  {%- set prefix = "stripe_activation: model '" ~ model.get('name') ~ "' (" ~ model.get('original_file_path') ~ "): " -%}

  {%- set problems = stripe_activation.sync_block_problems(block) -%}
  {%- if problems -%}
    {%- do exceptions.raise_compiler_error(prefix ~ problems | join(' ')) -%}
  {%- endif -%}

  {#- Every mapped column, and the key column, must be in the relation (any case). -#}
  {%- set actual = {} -%}
  {%- for column in adapter.get_columns_in_relation(this) -%}
    {%- do actual.update({column.name | lower: column.name}) -%}
  {%- endfor -%}
  {%- set wanted = [(block['key']['column'], 'stripe_activation.key.column')] -%}
  {%- for path, target in block.get('fields', {}).items() -%}
    {%- if not (target is mapping and 'value' in target) -%}
      {%- set column = target.get('column') if target is mapping else target -%}
      {%- do wanted.append((column, 'stripe_activation.fields.' ~ path)) -%}
    {%- endif -%}
  {%- endfor -%}
  {%- for column, setting in wanted -%}
    {%- if (column | string | lower) not in actual -%}
      {%- do problems.append("column '" ~ column ~ "' (" ~ setting ~ ") is not in " ~ this
                             ~ "; add it to the model's select or fix the mapping.") -%}
    {%- endif -%}
  {%- endfor -%}
  {%- if problems -%}
    {%- do exceptions.raise_compiler_error(prefix ~ problems | join(' ')) -%}
  {%- endif -%}

  {#- The key: no null or empty value, no value shared by several rows. -#}
  {%- set key_column = block['key']['column'] | string -%}
  {%- set casefold = stripe_activation.key_kind(block['object'], block['key']['field'])['casefold'] -%}
  {%- set result = run_query(stripe_activation.key_problems_sql(this, actual[key_column | lower], casefold)) -%}
  {%- set row = result.rows[0] -%}
  {%- set nulls = (row[0] or 0) | int -%}
  {%- set duplicated = (row[1] or 0) | int -%}
  {%- if nulls > 0 -%}
    {%- do problems.append("key column '" ~ key_column ~ "' (stripe_activation.key.column) is null or empty in "
                           ~ nulls ~ (" row" if nulls == 1 else " rows")
                           ~ "; filter such rows out in the model or fill in the key.") -%}
  {%- endif -%}
  {%- if duplicated > 0 -%}
    {%- do problems.append("key column '" ~ key_column ~ "' (stripe_activation.key.column) has "
                           ~ duplicated ~ (" value" if duplicated == 1 else " values")
                           ~ " shared by several rows (e.g. '" ~ row[2] ~ "')"
                           ~ "; make the key unique: one row per key.") -%}
  {%- endif -%}
  {%- if problems -%}
    {%- do exceptions.raise_compiler_error(prefix ~ problems | join(' ')) -%}
  {%- endif -%}
  {{ return('') }}
{% endmacro %}


{#- Problems in the block itself (no warehouse needed), each naming the setting and the fix.
    The Python package validates the same block in full (field paths, value types); this is
    what a post-hook can check cheaply. -#}
{% macro sync_block_problems(block) %}
  {{ return(adapter.dispatch('sync_block_problems', 'stripe_activation')(block)) }}
{% endmacro %}

{% macro default__sync_block_problems(block) %}
  {%- set problems = [] -%}
  {%- if block is not mapping -%}
    {%- do problems.append("config.meta.stripe_activation must be a mapping with object, key and fields; fix the block.") -%}
    {{ return(problems) }}
  {%- endif -%}
  {%- set registry = stripe_activation.object_registry() -%}
  {%- set objects = registry.keys() | list | sort -%}
  {%- set object = block.get('object') -%}
  {%- if object is none -%}
    {%- do problems.append("stripe_activation.object is missing; set object: " ~ objects | join(', ') ~ ".") -%}
  {%- elif object not in objects -%}
    {%- do problems.append("object '" ~ object ~ "' is not supported (stripe_activation.object); set object: "
                           ~ objects | join(', ') ~ ".") -%}
  {%- endif -%}
  {%- set behaviors = registry[object]['behaviors'] if object in objects else ['update_or_create', 'update_only', 'create_only'] -%}
  {%- set behavior = block.get('behavior', behaviors[0]) -%}
  {%- if behavior not in behaviors -%}
    {%- do problems.append("behavior '" ~ behavior ~ "' is unknown (stripe_activation.behavior); use "
                           ~ behaviors | join(', ') ~ ".") -%}
  {%- endif -%}
  {%- set key = block.get('key') -%}
  {%- if key is not mapping or not key.get('column') or not key.get('field') -%}
    {%- do problems.append("stripe_activation.key needs a column and a field, e.g. key: {column: customer_id, field: metadata.crm_id}.") -%}
  {%- elif object in objects and stripe_activation.key_kind(object, key.get('field') | string) is none -%}
    {%- set kinds = [] -%}
    {%- for kind in registry[object]['keys'] -%}
      {%- do kinds.append('metadata.<name>' if kind == 'metadata' else kind) -%}
    {%- endfor -%}
    {%- do problems.append("key field '" ~ key.get('field') ~ "' is unknown (stripe_activation.key.field); use "
                           ~ kinds | join(', ') ~ ".") -%}
  {%- endif -%}
  {%- set fields = block.get('fields', {}) -%}
  {%- if fields is not mapping -%}
    {%- do problems.append("stripe_activation.fields must map Stripe field paths to model columns, e.g. fields: {email: email}.") -%}
  {%- else -%}
    {%- for path, target in fields.items() -%}
      {%- set column = target.get('column') if target is mapping else target -%}
      {%- if target is mapping and 'value' in target -%}
      {%- elif column is none or column is mapping or (column | string | trim) == '' -%}
        {%- do problems.append("field '" ~ path ~ "' has no column (stripe_activation.fields." ~ path
                               ~ "); write " ~ path ~ ": <column> or " ~ path ~ ": {column: <column>}.") -%}
      {%- endif -%}
    {%- endfor -%}
  {%- endif -%}
  {{ return(problems) }}
{% endmacro %}


{#- The registry's facts for one key field of an object ("metadata.x" is the metadata
    kind), or none when the object has no such key kind. -#}
{% macro key_kind(object, field) %}
  {%- set keys = stripe_activation.object_registry().get(object, {}).get('keys', {}) -%}
  {%- set kind = 'metadata' if (field | string).startswith('metadata.') and (field | string | length) > 9 else field -%}
  {{ return(keys.get(kind)) }}
{% endmacro %}


{#- One row: rows with a null or empty key, keys shared by several rows, one such key. -#}
{% macro key_problems_sql(relation, key_column, casefold) %}
  {{ return(adapter.dispatch('key_problems_sql', 'stripe_activation')(relation, key_column, casefold)) }}
{% endmacro %}

{% macro default__key_problems_sql(relation, key_column, casefold) %}
  {%- set key_sql = stripe_activation.normalized_key(stripe_activation.quote_identifier(key_column), casefold) -%}
  {%- set sql -%}
with _sa_keys as (
    select {{ key_sql }} as _sa_key from {{ relation }}
),
_sa_duplicated as (
    select _sa_key from _sa_keys where _sa_key is not null group by _sa_key having count(*) > 1
)
select
    (select count(*) from _sa_keys where _sa_key is null) as _sa_null_keys,
    (select count(*) from _sa_duplicated) as _sa_duplicated_keys,
    (select min(_sa_key) from _sa_duplicated) as _sa_sample
  {%- endset -%}
  {{ return(sql) }}
{% endmacro %}
