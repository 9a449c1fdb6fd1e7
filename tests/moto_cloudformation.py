"""What moto's CloudFormation lacks to deploy examples/aws/cloudformation.yaml.

moto (5.2.5) has no ``AWS::IAM::OIDCProvider``, and its ``AWS::IAM::Role`` ignores
``ManagedPolicyArns``. moto finds resource types through ``CloudFormationModel.__subclasses__()``
(later classes win for the same type), so defining the two classes below, which importing
this module does, lets moto's own CloudFormation deploy the template: it still parses the
template, resolves parameters, conditions and intrinsic functions, names the resources and
computes the outputs. Both create through moto's IAM backend, as the IAM API would.
"""

from __future__ import annotations

from typing import Any

from moto.cloudformation import parsing
from moto.core.common_models import CloudFormationModel
from moto.iam.models import IAMBackend, Role, iam_backends
from moto.utilities.utils import get_partition

__all__ = ["ManagedPolicyRole", "OIDCProvider"]


def _iam(account_id: str, region_name: str) -> IAMBackend:
    backend: IAMBackend = iam_backends[account_id][get_partition(region_name)]
    return backend


class OIDCProvider(CloudFormationModel):
    """``AWS::IAM::OIDCProvider``: ``Ref`` and ``Fn::GetAtt ... Arn`` give its ARN."""

    def __init__(self, arn: str) -> None:
        self.arn = arn

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""  # AWS names the provider after its URL

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::IAM::OIDCProvider"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr == "Arn"

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> OIDCProvider:
        properties = cloudformation_json["Properties"]
        provider = _iam(account_id, region_name).create_open_id_connect_provider(
            url=properties["Url"],
            thumbprint_list=properties.get("ThumbprintList", []),
            client_id_list=properties.get("ClientIdList", []),
            tags=properties.get("Tags", []),
        )
        return cls(provider.arn)

    @property
    def physical_resource_id(self) -> str:
        return self.arn

    def get_cfn_attribute(self, attribute_name: str) -> str:
        if attribute_name == "Arn":
            return self.arn
        raise NotImplementedError(f'"{attribute_name}" is not an attribute of an OIDC provider')

    def is_created(self) -> bool:
        return True


class ManagedPolicyRole(CloudFormationModel):
    """moto's ``AWS::IAM::Role``, plus the ``ManagedPolicyArns`` it leaves unattached."""

    @staticmethod
    def cloudformation_name_type() -> str:
        return Role.cloudformation_name_type()

    @staticmethod
    def cloudformation_type() -> str:
        return Role.cloudformation_type()

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return Role.has_cfn_attr(attr)

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> Role:
        role = Role.create_from_cloudformation_json(
            resource_name, cloudformation_json, account_id, region_name, **kwargs
        )
        iam = _iam(account_id, region_name)
        for policy_arn in cloudformation_json["Properties"].get("ManagedPolicyArns", []):
            iam.attach_role_policy(policy_arn, role.name)
        return role


# moto caches its table of resource types on first use; rebuild it with the classes above.
for _cached in (parsing.get_model_list, parsing.get_model_map, parsing.get_name_type_map):
    _cached.cache_clear()
