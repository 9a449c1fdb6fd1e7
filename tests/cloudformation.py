"""Render a CloudFormation template's resources for given parameters, as CloudFormation would.

moto's CloudFormation has no ``AWS::IAM::OIDCProvider``, so the tests render the template
themselves and create its resources through the IAM API. Parameters are checked against
their ``AllowedPattern``/``AllowedValues``/``MinValue``/``MaxValue`` first (CloudFormation
refuses to create a stack otherwise). Supported intrinsics: ``Ref``, ``Fn::Sub``,
``Fn::Join``, ``Fn::Split``, ``Fn::Select``, ``Fn::If``, ``Fn::GetAtt``, and the condition
functions; any other raises, so a change to the template cannot slip past the tests.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

__all__ = ["ParameterError", "Rendering", "load_template"]

NO_VALUE = object()  # AWS::NoValue: the property or list item disappears


class ParameterError(ValueError):
    """A parameter value CloudFormation would refuse."""


class _Loader(yaml.SafeLoader):
    """YAML with CloudFormation's short forms (``!Ref x`` is ``{"Ref": "x"}``)."""


def _short_form(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    if suffix == "Condition":
        return {"Condition": value}
    return {f"Fn::{suffix}": value}


_Loader.add_multi_constructor("!", _short_form)


def load_template(path: Path) -> dict[str, Any]:
    template: dict[str, Any] = yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506
    return template


class Rendering:
    """A template with its parameters set; ``refs`` are the values of created resources."""

    def __init__(
        self,
        template: Mapping[str, Any],
        parameters: Mapping[str, str],
        *,
        account_id: str = "123456789012",
        region: str = "us-east-1",
    ) -> None:
        self.template = template
        self.parameters = _checked_parameters(template.get("Parameters", {}), parameters)
        self.pseudo: dict[str, Any] = {
            "AWS::AccountId": account_id,
            "AWS::Partition": "aws",
            "AWS::Region": region,
            "AWS::StackName": "gitlab-botocore-test",
            "AWS::URLSuffix": "amazonaws.com",
        }
        self.refs: dict[str, str] = {}
        self.attributes: dict[tuple[str, str], str] = {}

    def condition(self, name: str) -> bool:
        return bool(self._evaluate(self.template["Conditions"][name]))

    def resource(self, logical_id: str) -> dict[str, Any] | None:
        """The resolved properties of a resource, or ``None`` if its condition is false."""
        resource = self.template["Resources"][logical_id]
        if "Condition" in resource and not self.condition(resource["Condition"]):
            return None
        properties = self.resolve(resource.get("Properties", {}))
        assert isinstance(properties, dict)
        return properties

    def output(self, name: str) -> Any:
        return self.resolve(self.template["Outputs"][name]["Value"])

    def resolve(self, value: Any) -> Any:
        result = self._evaluate(value)
        if result is NO_VALUE:
            raise ValueError("AWS::NoValue where a value is required")
        return result

    # -- intrinsic functions -------------------------------------------------------------

    def _evaluate(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self._evaluate(item) for item in value]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, argument), *_ = value.items()
            if key == "Ref" or key.startswith("Fn::") or key == "Condition":
                return self._function(key, argument)
        properties = {k: self._evaluate(v) for k, v in value.items()}
        return {k: v for k, v in properties.items() if v is not NO_VALUE}

    def _function(self, name: str, argument: Any) -> Any:  # noqa: PLR0911, PLR0912
        if name == "Ref":
            return self._ref(argument)
        if name == "Condition":
            return self.condition(argument)
        if name == "Fn::If":
            condition, when_true, when_false = argument
            return self._evaluate(when_true if self.condition(condition) else when_false)
        if name == "Fn::Equals":
            left, right = (self._evaluate(a) for a in argument)
            return left == right
        if name == "Fn::Not":
            (operand,) = argument
            return not self._evaluate(operand)
        if name == "Fn::And":
            return all(self._evaluate(a) for a in argument)
        if name == "Fn::Or":
            return any(self._evaluate(a) for a in argument)
        if name == "Fn::Join":
            delimiter, items = argument
            if not isinstance(delimiter, str):
                raise ValueError("Fn::Join takes a literal delimiter")
            return delimiter.join(self._evaluate(items))
        if name == "Fn::Split":
            delimiter, text = argument
            if not isinstance(delimiter, str):
                raise ValueError("Fn::Split takes a literal delimiter")
            return str(self._evaluate(text)).split(delimiter)
        if name == "Fn::Select":
            index, items = argument
            return self._evaluate(items)[int(self._evaluate(index))]
        if name == "Fn::Sub":
            return self._sub(argument)
        if name == "Fn::GetAtt":
            logical_id, attribute = argument
            return self.attributes[(logical_id, attribute)]
        raise ValueError(f"{name} is not supported by this renderer")

    def _ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.refs:
            return self.refs[name]
        raise ValueError(f"Ref to {name}, which is neither a parameter nor a created resource")

    def _sub(self, argument: Any) -> str:
        variables: dict[str, Any] = {}
        if isinstance(argument, str):
            text = argument
        else:
            text, raw = argument
            variables = {k: self._evaluate(v) for k, v in raw.items()}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                value = variables[name]
            elif "." in name:
                logical_id, attribute = name.split(".", 1)
                value = self.attributes[(logical_id, attribute)]
            else:
                value = self._ref(name)
            if not isinstance(value, str):
                raise ValueError(f"${{{name}}} is not a string: {value!r}")
            return value

        return re.sub(r"\$\{([^}]+)\}", replace, text)


def _checked_parameters(
    declared: Mapping[str, Any], given: Mapping[str, str]
) -> dict[str, str | list[str]]:
    unknown = set(given) - set(declared)
    if unknown:
        raise ParameterError(f"Parameters {sorted(unknown)} do not exist in the template")
    values: dict[str, str | list[str]] = {}
    for name, spec in declared.items():
        if name in given:
            raw = given[name]
        elif "Default" in spec:
            raw = str(spec["Default"])
        else:
            raise ParameterError(f"Parameters: [{name}] must have values")
        if "AllowedValues" in spec and raw not in [str(v) for v in spec["AllowedValues"]]:
            raise ParameterError(f"Parameter '{name}' must be one of AllowedValues")
        if "AllowedPattern" in spec and not re.fullmatch(spec["AllowedPattern"], raw):
            raise ParameterError(f"Parameter '{name}' must match pattern {spec['AllowedPattern']}")
        if spec["Type"] == "Number":
            number = float(raw)
            if "MinValue" in spec and number < float(spec["MinValue"]):
                raise ParameterError(f"Parameter '{name}' must be a number not less than MinValue")
            if "MaxValue" in spec and number > float(spec["MaxValue"]):
                raise ParameterError(
                    f"Parameter '{name}' must be a number not greater than MaxValue"
                )
        values[name] = raw.split(",") if spec["Type"] == "CommaDelimitedList" else raw
    return values
