{% macro validate() %}
  {{ return(adapter.dispatch('validate', 'stripe_activation')()) }}
{% endmacro %}

{% macro default__validate() %}
  {# placeholder: filled in by the warehouse work #}
  select 1
{% endmacro %}
