{#- Building blocks shared by the bookkeeping, diff and validation macros.
    Every macro dispatches in the `stripe_activation` namespace, so a project can override
    one for its adapter (`dispatch: [{macro_namespace: stripe_activation, ...}]`). -#}

{#- The version of the macro interface the Python package calls: bumped when a macro's
    arguments or result change, so an old installed package is reported, not misused. -#}
{% macro macros_api_version() %}
  {{ return(4) }}
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
