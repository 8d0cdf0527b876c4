{% macro binding_char() %}
  {{ return(adapter.dispatch('get_binding_char', 'dbt')()) }}
{% endmacro %}
