{#- Building blocks shared by the bookkeeping, diff and validation macros.
    Every macro dispatches in the `stripe_activation` namespace, so a project can override
    one for its adapter (`dispatch: [{macro_namespace: stripe_activation, ...}]`). -#}

{#- The version of the macro interface the Python package calls: bumped when a macro's
    arguments or result change, so an old installed package is reported, not misused. -#}
{% macro macros_api_version() %}
  {{ return(6) }}
{% endmacro %}


{#- The adapter's DB-API placeholder ('?' on DuckDB, '%s' on PostgreSQL). -#}
{% macro binding_char() %}
  {{ return(adapter.dispatch('get_binding_char', 'dbt')()) }}
{% endmacro %}


{#- `n` placeholders, comma separated, in parentheses: one VALUES tuple. -#}
{% macro placeholders(n) %}
  {{ return(adapter.dispatch('placeholders', 'stripe_activation')(n)) }}
{% endmacro %}

{% macro default__placeholders(n) %}
  {%- set char = stripe_activation.binding_char() -%}
  {%- set marks = [] -%}
  {%- for _ in range(n) -%}{%- do marks.append(char) -%}{%- endfor -%}
  {{ return('(' ~ marks | join(', ') ~ ')') }}
{% endmacro %}


{#- SQL text that will run with bound values: a literal `%` must be doubled where the
    placeholder is `%s` (pyformat drivers), or the driver reads it as a placeholder. -#}
{% macro bound_text(text) %}
  {%- if stripe_activation.binding_char() == '%s' -%}
    {{ return((text | string).replace('%', '%%')) }}
  {%- endif -%}
  {{ return(text | string) }}
{% endmacro %}


{#- A string literal for config values (model ids, the mapping fingerprint): never row data,
    which is always bound. Quotes are doubled as in standard SQL. -#}
{% macro string_literal(value) %}
  {{ return(adapter.dispatch('string_literal', 'stripe_activation')(value)) }}
{% endmacro %}

{% macro default__string_literal(value) %}
  {{ return("'" ~ (value | string).replace("'", "''") ~ "'") }}
{% endmacro %}

{% macro bigquery__string_literal(value) %}
  {{ return("'" ~ (value | string).replace('\\', '\\\\').replace("'", "\\'") ~ "'") }}
{% endmacro %}

{% macro spark__string_literal(value) %}
  {{ return("'" ~ (value | string).replace('\\', '\\\\').replace("'", "\\'") ~ "'") }}
{% endmacro %}


{#- A quoted identifier that survives spaces, mixed case and the quote character itself
    (adapter.quote wraps the name but does not escape an embedded quote). -#}
{% macro quote_identifier(name) %}
  {{ return(adapter.dispatch('quote_identifier', 'stripe_activation')(name)) }}
{% endmacro %}

{% macro default__quote_identifier(name) %}
  {%- set empty = adapter.quote('') -%}
  {%- set opening, closing = empty[0], empty[-1] -%}
  {{ return(opening ~ (name | string).replace(closing, closing ~ closing) ~ closing) }}
{% endmacro %}

{% macro bigquery__quote_identifier(name) %}
  {{ return('`' ~ (name | string).replace('\\', '\\\\').replace('`', '\\`') ~ '`') }}
{% endmacro %}


{#- `expression` without leading/trailing whitespace, as Python's str.strip() does for the
    ASCII whitespace (space, tab, newline, vertical tab, form feed, carriage return). -#}
{% macro trim_whitespace(expression) %}
  {{ return(adapter.dispatch('trim_whitespace', 'stripe_activation')(expression)) }}
{% endmacro %}

{% macro default__trim_whitespace(expression) %}
  {{ return('trim(' ~ expression ~ ')') }}
{% endmacro %}

{% macro postgres__trim_whitespace(expression) %}
  {{ return('btrim(' ~ expression ~ ', chr(32) || chr(9) || chr(10) || chr(11) || chr(12) || chr(13))') }}
{% endmacro %}

{% macro duckdb__trim_whitespace(expression) %}
  {{ return('trim(' ~ expression ~ ', chr(32) || chr(9) || chr(10) || chr(11) || chr(12) || chr(13))') }}
{% endmacro %}


{#- The key as the sync compares it (objects' normalize_key in Python): trimmed text,
    lowercased when the key kind is case-folded (the object contract's `casefold`, passed in
    by the Python package or read from the generated registry); empty becomes null. -#}
{% macro normalized_key(column_sql, casefold) %}
  {{ return(adapter.dispatch('normalized_key', 'stripe_activation')(column_sql, casefold)) }}
{% endmacro %}

{% macro default__normalized_key(column_sql, casefold) %}
  {%- set text = 'cast(' ~ column_sql ~ ' as ' ~ (dbt.type_string() | trim) ~ ')' -%}
  {%- set trimmed = stripe_activation.trim_whitespace(text) -%}
  {%- if casefold -%}{%- set trimmed = 'lower(' ~ trimmed ~ ')' -%}{%- endif -%}
  {{ return('nullif(' ~ trimmed ~ ", '')") }}
{% endmacro %}


{#- One row's hash: the mapping fingerprint (config, as a literal), then each column as text,
    nulls as a marker, joined by a separator: dbt_utils' surrogate-key pattern. A changed
    mapping changes every hash, so the next sync re-plans every row. -#}
{% macro row_hash(column_sqls, fingerprint) %}
  {{ return(adapter.dispatch('row_hash', 'stripe_activation')(column_sqls, fingerprint)) }}
{% endmacro %}

{% macro default__row_hash(column_sqls, fingerprint) %}
  {%- set separator = stripe_activation.string_literal('-|-') -%}
  {%- set null_marker = stripe_activation.string_literal('_stripe_activation_null_') -%}
  {%- set parts = [stripe_activation.string_literal(fingerprint)] -%}
  {%- for column_sql in column_sqls -%}
    {%- do parts.append(separator) -%}
    {%- do parts.append('coalesce(cast(' ~ column_sql ~ ' as ' ~ (dbt.type_string() | trim) ~ '), ' ~ null_marker ~ ')') -%}
  {%- endfor -%}
  {{ return(dbt.hash(dbt.concat(parts)) | trim) }}
{% endmacro %}


{#- Connected accounts (a model's `account` column): a key is unique per account, so the
    state keys it as `<account>/<key>` (`/<key>` for the platform itself): account ids hold
    no '/', so the first '/' splits it back. Null when the key is null. -#}
{% macro scoped_key(key_sql, account_sql) %}
  {{ return(adapter.dispatch('scoped_key', 'stripe_activation')(key_sql, account_sql)) }}
{% endmacro %}

{% macro default__scoped_key(key_sql, account_sql) %}
  {{ return('case when ' ~ key_sql ~ ' is null then null else '
            ~ dbt.concat(['coalesce(' ~ account_sql ~ ", '')", "'/'", key_sql]) ~ ' end') }}
{% endmacro %}


{#- The account part of a scoped state key ('' for the platform). -#}
{% macro account_of_key(key_sql) %}
  {{ return(dbt.split_part(key_sql, "'/'", 1)) }}
{% endmacro %}


{#- --shard K/N: whether an account's text (the platform's is '') falls in shard K of N.
    Any stable hash works, as long as one warehouse answers it the same way every run:
    the first three hex digits of dbt's hash (md5), 0..4095, modulo N. -#}
{% macro in_shard(account_text_sql, shard) %}
  {{ return(adapter.dispatch('in_shard', 'stripe_activation')(account_text_sql, shard)) }}
{% endmacro %}

{% macro default__in_shard(account_text_sql, shard) %}
  {%- set digest = dbt.hash(account_text_sql) -%}
  {%- set digits = [] -%}
  {%- for i in range(3) -%}
    {%- do digits.append("(position(substr(" ~ digest ~ ", " ~ (i + 1) ~ ", 1) in '0123456789abcdef') - 1) * " ~ (16 ** (2 - i))) -%}
  {%- endfor -%}
  {{ return('mod(' ~ digits | join(' + ') ~ ', ' ~ (shard[1] | int) ~ ') = ' ~ ((shard[0] | int) - 1)) }}
{% endmacro %}


{#- The key of a model's rows as the state holds it, and the condition a state row meets in
    this run's scope (its shard), for `scope` = {account_column, shard} (both optional). -#}
{% macro state_key_sql(key_column, casefold, scope) %}
  {%- set key_sql = stripe_activation.normalized_key(stripe_activation.quote_identifier(key_column), casefold) -%}
  {%- if scope.get('account_column') -%}
    {%- set key_sql = stripe_activation.scoped_key(key_sql, stripe_activation.account_sql(scope)) -%}
  {%- endif -%}
  {{ return(key_sql) }}
{% endmacro %}

{% macro account_sql(scope) %}
  {{ return(stripe_activation.normalized_key(stripe_activation.quote_identifier(scope['account_column']), false)) }}
{% endmacro %}

{#- Source rows of this shard (true without a shard). -#}
{% macro source_in_scope(scope) %}
  {%- if not scope.get('shard') -%}{{ return('1 = 1') }}{%- endif -%}
  {{ return(stripe_activation.in_shard('coalesce(' ~ stripe_activation.account_sql(scope) ~ ", '')", scope['shard'])) }}
{% endmacro %}

{#- State rows of this shard, by the account part of their key (true without a shard). -#}
{% macro state_in_scope(alias, scope) %}
  {%- if not scope.get('shard') -%}{{ return('1 = 1') }}{%- endif -%}
  {{ return(stripe_activation.in_shard(stripe_activation.account_of_key(alias ~ '.key_value'), scope['shard'])) }}
{% endmacro %}
